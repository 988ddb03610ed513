//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every status this API answers has one meaning, so every problem uses the type `about:blank`
//! with the status's reason phrase as `title`; `detail` says what went wrong in words a client
//! developer can act on, and 400s carry a `field` extension member naming the offending input
//! (`address.token`, `limit`, `Tidings-Installation-Id`, …). Nothing internal (store messages,
//! causes, stack traces) ever reaches a response.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tidings::{Error, ErrorKind, Retry};

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response (RFC 9457).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    as = Problem,
    example = json!({
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "invalid limit: must be 1 to 500",
        "field": "limit"
    })
)]
pub struct ProblemDocument {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason phrase of the status.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong.
    pub detail: String,
    /// For 400s, the input at fault: a JSON path into the body, a query parameter, a path
    /// parameter or a header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error response in the making.
#[derive(Clone, Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    field: Option<String>,
    retry_after: Option<Duration>,
    www_authenticate: Option<String>,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
            field: None,
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// 400 naming `field`.
    pub(crate) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Problem {
            field: Some(field.into()),
            ..Problem::new(StatusCode::BAD_REQUEST, detail)
        }
    }

    /// 404, the same for an id that does not exist and one that belongs to someone else.
    pub(crate) fn not_found(what: &str) -> Self {
        Problem::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }

    /// 401 for a request without a usable bearer credential.
    pub(crate) fn credential_missing(detail: &str) -> Self {
        Problem {
            www_authenticate: Some("Bearer".to_owned()),
            ..Problem::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    /// 401 for a credential that was refused (RFC 6750 `invalid_token`).
    pub(crate) fn credential_refused(description: &str) -> Self {
        let quoted: String = description
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
            .collect();
        Problem {
            www_authenticate: Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{quoted}\""
            )),
            ..Problem::new(StatusCode::UNAUTHORIZED, description)
        }
    }

    /// 503 with `Retry-After`.
    pub(crate) fn unavailable(detail: &str, retry_after: Duration) -> Self {
        Problem {
            retry_after: Some(retry_after),
            ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// 500 without a word about why (the cause is logged, not sent).
    pub(crate) fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to handle the request",
        )
    }

    /// Maps an error of the Tidings handle; `what` names the resource for "not found".
    pub(crate) fn from_core(error: &Error, what: &str, retry_after: Duration) -> Self {
        match error.kind() {
            ErrorKind::InvalidInput => {
                let field = error.field().unwrap_or("body").to_owned();
                let detail = match error {
                    Error::Invalid(v) => format!("invalid {}: {}", v.field(), v.reason()),
                    other => other.to_string(),
                };
                Problem::invalid(field, detail)
            }
            ErrorKind::NotFound => Problem::not_found(what),
            ErrorKind::Conflict => Problem::new(
                StatusCode::CONFLICT,
                "a concurrent change got there first; try again",
            ),
            ErrorKind::Unauthenticated => Problem::credential_refused("the credential was refused"),
            ErrorKind::Unavailable => {
                tracing::warn!(error = %error, "dependency unavailable");
                // A store that knows when it is back (a failover in progress) says so.
                let after = match error {
                    Error::Store(e) => match e.retry() {
                        Retry::After(d) if !d.is_zero() => d,
                        _ => retry_after,
                    },
                    _ => retry_after,
                };
                Problem::unavailable("the service is temporarily unavailable", after)
            }
            _ => {
                tracing::error!(error = %error, "request failed");
                Problem::internal()
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn document(&self) -> ProblemDocument {
        ProblemDocument {
            kind: "about:blank".to_owned(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            field: self.field.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.document()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(after) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(challenge) = self.www_authenticate {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// Turns any error response that is not a problem yet (axum's 405 with its `Allow` header, a
/// layer's rejection) into one, keeping its status and headers.
pub(crate) async fn problemize(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this path does not take that method; see Allow",
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        s if s.is_server_error() => "the server failed to handle the request",
        _ => "the request was refused",
    };
    let problem = Problem::new(status, detail).into_response();
    let (new_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

/// The answer for a panic caught by the panic layer: a plain 500.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::internal().into_response()
}
