//! Extractors whose rejections are problems naming the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use tidings::{Credential, EndpointId, IdentityErrorKind, NotificationId, Principal};

use crate::problem::Problem;
use crate::state::ApiState;

/// The header a device names its installation with, so the server knows which endpoint a fetch
/// or a state change came from.
pub const INSTALLATION_HEADER: &str = "Tidings-Installation-Id";

/// Longest installation id, in bytes (as the core allows).
const MAX_INSTALLATION_ID: usize = 256;

/// The authenticated caller.
#[derive(Debug)]
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Err(Problem::credential_missing(
                "this request needs an `Authorization: Bearer <token>` header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::credential_missing("the Authorization header must be `Bearer <token>`")
            })?;
        let principal = match state.tidings.authenticate(&Credential::bearer(token)).await {
            Ok(p) => p,
            Err(tidings::Error::Identity(e)) => {
                return Err(match e.kind() {
                    IdentityErrorKind::Unavailable => {
                        tracing::warn!(error = %e, "identity provider unavailable");
                        Problem::unavailable(
                            "the identity provider is temporarily unavailable",
                            state.config.retry_after,
                        )
                    }
                    IdentityErrorKind::Expired => Problem::credential_refused(&describe(&e)),
                    IdentityErrorKind::Missing => {
                        Problem::credential_missing("no credential was presented")
                    }
                    _ => Problem::credential_refused(&describe(&e)),
                })
            }
            Err(other) => {
                return Err(Problem::from_core(
                    &other,
                    "credential",
                    state.config.retry_after,
                ))
            }
        };
        if state.tidings.app(&principal.app).is_err() {
            return Err(Problem::credential_refused(
                "the credential is for an app this server does not serve",
            ));
        }
        Ok(Caller(principal))
    }
}

/// The identity error's message without the "authentication failed (Kind):" prefix; identity
/// adapters write these for clients (they never contain the credential).
fn describe(e: &tidings::IdentityError) -> String {
    let text = e.to_string();
    match text.split_once("): ") {
        Some((_, message)) => message.to_owned(),
        None => text,
    }
}

/// The `{installation_id}` path parameter.
#[derive(Debug)]
pub(crate) struct InstallationPath(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for InstallationPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::invalid("installation_id", e.body_text()))?;
        check_installation_id(&id).map_err(|reason| Problem::invalid("installation_id", reason))?;
        Ok(InstallationPath(id))
    }
}

/// The `{id}` path parameter of a notification.
#[derive(Debug)]
pub(crate) struct NotificationPath(pub(crate) NotificationId);

impl<S: Send + Sync> FromRequestParts<S> for NotificationPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Problem::invalid("id", e.body_text()))?;
        NotificationId::parse(&text)
            .map(NotificationPath)
            .ok_or_else(|| Problem::invalid("id", "invalid id: must be a UUID"))
    }
}

fn check_installation_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() || id.len() > MAX_INSTALLATION_ID {
        return Err(format!(
            "invalid installation id: must be 1 to {MAX_INSTALLATION_ID} bytes"
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("invalid installation id: must not contain control characters".into());
    }
    Ok(())
}

/// The installation id a device named in [`INSTALLATION_HEADER`], if any.
pub(crate) fn installation_header(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(INSTALLATION_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        Problem::invalid(
            INSTALLATION_HEADER,
            "invalid installation id: must be visible ASCII",
        )
    })?;
    check_installation_id(text).map_err(|reason| Problem::invalid(INSTALLATION_HEADER, reason))?;
    Ok(Some(text.to_owned()))
}

/// Resolves the caller's installation (from the header) to its endpoint. An installation id
/// that names none of the caller's endpoints is refused: the device must register first.
pub(crate) async fn calling_endpoint(
    state: &ApiState,
    caller: &Principal,
    headers: &HeaderMap,
) -> Result<Option<EndpointId>, Problem> {
    let Some(installation) = installation_header(headers)? else {
        return Ok(None);
    };
    let endpoints = state
        .tidings
        .endpoints(&caller.app, &caller.user)
        .await
        .map_err(|e| Problem::from_core(&e, "endpoint", state.config.retry_after))?;
    endpoints
        .into_iter()
        .filter(|e| e.installation_id.as_deref() == Some(installation.as_str()))
        .max_by_key(|e| e.last_seen_at)
        .map(|e| Some(e.id))
        .ok_or_else(|| {
            Problem::invalid(
                INSTALLATION_HEADER,
                "no endpoint of yours is registered under this installation id; \
                 register it with PUT /endpoints/{installation_id} first",
            )
        })
}

/// A JSON body; rejections are problems naming the JSON path at fault.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is too large",
                )
            } else {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses `bytes`, a JSON object, as `T`, naming the offending field on failure.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::invalid("body", "the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        if inner.is_eof() || (inner.is_syntax() && path == ".") {
            return Problem::invalid("body", format!("the body is not valid JSON: {inner}"));
        }
        let field = missing_field(&message)
            .map(|name| join(&path, name))
            .unwrap_or_else(|| if path == "." { "body".to_owned() } else { path });
        let detail = format!("invalid {field}: {}", strip_position(&message));
        Problem::invalid(field, detail)
    })?;
    de.end()
        .map_err(|e| Problem::invalid("body", format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The name in serde's "missing field `x`" message: the path serde_path_to_error reports for
/// it is the enclosing object's (for unknown fields it already ends with the field).
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

fn join(path: &str, name: &str) -> String {
    if path == "." || path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// serde_json's message without its " at line 1 column 20" suffix.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// The query string as (name, value) pairs, refusing names outside `known` and repeats.
pub(crate) fn query_pairs(
    query: Option<&str>,
    known: &[&str],
) -> Result<Vec<(String, String)>, Problem> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(Problem::invalid(
                name.as_ref(),
                format!(
                    "unknown query parameter; expected one of {}",
                    known.join(", ")
                ),
            ));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(Problem::invalid(name.as_ref(), "given more than once"));
        }
        pairs.push((name.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// Parses a query value with the core's serde names (`read`, `dismissed`, …).
pub(crate) fn parse_enum<T: DeserializeOwned>(name: &str, value: &str) -> Result<T, Problem> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).map_err(|e| {
        Problem::invalid(
            name,
            format!("invalid {name}: {}", strip_position(&e.to_string())),
        )
    })
}

/// Parses a page size.
pub(crate) fn parse_limit(value: &str) -> Result<usize, Problem> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=500).contains(n))
        .ok_or_else(|| Problem::invalid("limit", "invalid limit: must be 1 to 500"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        patch: tidings::StatePatch,
    }

    #[test]
    fn unknown_nested_field_is_named_with_its_path() {
        let err = parse_json::<Outer>(br#"{"patch": {"reed": "read"}}"#).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("patch.reed"));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn wrong_enum_value_names_the_field() {
        let err = parse_json::<Outer>(br#"{"patch": {"read": "maybe"}}"#).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("patch.read"));
    }

    #[test]
    fn syntax_error_names_the_body() {
        let err = parse_json::<Outer>(br#"{"patch": "#).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("body"));
        let err = parse_json::<Outer>(br#"{"patch": {}} trailing"#).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("body"));
    }

    #[test]
    fn unknown_and_repeated_query_parameters_are_refused() {
        let err = query_pairs(Some("limt=5"), &["limit"]).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("limt"));
        let err = query_pairs(Some("limit=5&limit=6"), &["limit"]).unwrap_err();
        assert_eq!(err.document().field.as_deref(), Some("limit"));
        assert_eq!(query_pairs(Some("limit=5"), &["limit"]).unwrap().len(), 1);
    }
}
