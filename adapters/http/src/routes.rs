//! The handlers, each with its OpenAPI description.

use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tidings::{EndpointRegistration, HistoryCursor, HistoryFilter, StatePatch, Timestamp};

use crate::extract::{
    calling_endpoint, parse_enum, parse_limit, query_pairs, Caller, InstallationPath, JsonBody,
    NotificationPath,
};
use crate::json::JsonResponse;
use crate::model::{
    BulkStateRequest, BulkStateResult, ChangePageView, EndpointView, HistoryPageView,
    NotificationView, RegisterEndpointRequest, StateChange,
};
use crate::problem::{Problem, ProblemDocument};
use crate::schema;
use crate::state::ApiState;

/// Bytes a notification takes in a response, about, to size page buffers up front.
const ITEM_SIZE_HINT: usize = 512;

/// Registers or refreshes this installation's push address.
///
/// Idempotent: call it on every launch and whenever the platform hands out a new address. The
/// installation keeps one endpoint: a new address replaces the old one, and an address that was
/// registered to another user (someone else signed in on this device before) moves to the
/// caller.
#[utoipa::path(
    put,
    path = "/endpoints/{installation_id}",
    tag = "endpoints",
    operation_id = "registerEndpoint",
    params(("installation_id" = String, Path, description = "A client-chosen id of this app installation, stable across launches (1 to 256 bytes); e.g. a UUID generated on first launch.")),
    request_body(content = RegisterEndpointRequest, examples(
        ("apns" = (summary = "iOS, iPadOS, macOS", value = json!({"address": {"platform": "apns", "token": "5f0c1e3d9a7b4c2e8f6a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e", "environment": "production"}}))),
        ("fcm" = (summary = "Android", value = json!({"address": {"platform": "fcm", "token": "dQw4w9WgXcQ:APA91bH0_example-registration-token"}}))),
        ("wns" = (summary = "Windows", value = json!({"address": {"platform": "wns", "channel_uri": "https://db5p.notify.windows.com/w/?token=AwYAAAB%2bExample"}, "address_expires_at": "2026-01-31T00:00:00Z"}))),
        ("webpush" = (summary = "Browser", value = json!({"address": {"platform": "webpush", "endpoint": "https://fcm.googleapis.com/fcm/send/c1KrmpTuRm0:APA91bExample", "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4", "auth": "BTBZMqHH6r4Tts7J_aSIgg"}})))
    )),
    responses(
        (status = 200, description = "The endpoint, registered or refreshed.", body = EndpointView),
        (status = 400, description = "The address is invalid (`field` names it, e.g. `address.token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the configured limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON.", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn register_endpoint(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    InstallationPath(installation): InstallationPath,
    JsonBody(body): JsonBody<RegisterEndpointRequest>,
) -> Result<Json<EndpointView>, Problem> {
    let retry = state.config.retry_after;
    let registration = EndpointRegistration {
        app: caller.app.clone(),
        user: caller.user.clone(),
        installation_id: Some(installation.clone()),
        address: body.address,
        address_expires_at: body.address_expires_at,
    };
    let endpoint = state
        .tidings
        .register_endpoint(registration)
        .await
        .map_err(|e| Problem::from_core(&e, "endpoint", retry))?;
    // When the address was already registered under another installation id, the store moved
    // that endpoint here; the endpoint this installation had before carries a stale address.
    let stale: Vec<_> = state
        .tidings
        .endpoints(&caller.app, &caller.user)
        .await
        .map_err(|e| Problem::from_core(&e, "endpoint", retry))?
        .into_iter()
        .filter(|e| e.id != endpoint.id && e.installation_id.as_deref() == Some(&installation))
        .collect();
    for old in stale {
        match state
            .tidings
            .delete_endpoint(&caller.app, &caller.user, old.id)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Problem::from_core(&e, "endpoint", retry)),
        }
    }
    Ok(Json(EndpointView::new(endpoint, installation)))
}

/// Removes this installation's endpoint: it gets no more pushes (call it on sign-out).
#[utoipa::path(
    delete,
    path = "/endpoints/{installation_id}",
    tag = "endpoints",
    operation_id = "deleteEndpoint",
    params(("installation_id" = String, Path, description = "The installation id the endpoint was registered under.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "The caller has no endpoint under this installation id.", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete_endpoint(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    InstallationPath(installation): InstallationPath,
) -> Result<StatusCode, Problem> {
    let retry = state.config.retry_after;
    let matching: Vec<_> = state
        .tidings
        .endpoints(&caller.app, &caller.user)
        .await
        .map_err(|e| Problem::from_core(&e, "endpoint", retry))?
        .into_iter()
        .filter(|e| e.installation_id.as_deref() == Some(&installation))
        .collect();
    if matching.is_empty() {
        return Err(Problem::not_found("endpoint"));
    }
    for endpoint in matching {
        match state
            .tidings
            .delete_endpoint(&caller.app, &caller.user, endpoint.id)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Problem::from_core(&e, "endpoint", retry)),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's notifications, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/notifications",
    tag = "notifications",
    operation_id = "listNotifications",
    params(
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
        ("read" = Option<schema::ReadState>, Query, description = "Only this read state."),
        ("action" = Option<schema::UserAction>, Query, description = "Only this user action."),
        ("group" = Option<String>, Query, description = "Only this group."),
        ("since" = Option<String>, Query, format = DateTime, description = "Only notifications sent at or after this time (RFC 3339)."),
        ("include_deleted" = Option<bool>, Query, description = "Include deleted notifications (default false)."),
    ),
    responses(
        (status = 200, description = "A page of history.", body = HistoryPageView),
        (status = 400, description = "A query parameter is invalid (`field` names it).", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_notifications(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<JsonResponse<HistoryPageView>, Problem> {
    const KNOWN: [&str; 7] = [
        "cursor",
        "limit",
        "read",
        "action",
        "group",
        "since",
        "include_deleted",
    ];
    let mut filter = HistoryFilter::default();
    let mut cursor = None;
    let mut limit = state.config.default_page_size;
    for (name, value) in query_pairs(query.as_deref(), &KNOWN)? {
        match name.as_str() {
            "cursor" => {
                cursor = Some(HistoryCursor::decode(&value).ok_or_else(|| {
                    Problem::invalid("cursor", "invalid cursor: pass `next_cursor` as it came")
                })?);
            }
            "limit" => limit = parse_limit(&value)?,
            "read" => filter.read = Some(parse_enum("read", &value)?),
            "action" => filter.action = Some(parse_enum("action", &value)?),
            "group" => filter.group = Some(value),
            "since" => {
                filter.since = Some(Timestamp::parse_rfc3339(&value).ok_or_else(|| {
                    Problem::invalid("since", "invalid since: must be an RFC 3339 time")
                })?);
            }
            _ => {
                filter.include_deleted = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Problem::invalid(
                            "include_deleted",
                            "invalid include_deleted: must be true or false",
                        ))
                    }
                }
            }
        }
    }
    let page = state
        .tidings
        .history(&caller.app, &caller.user, filter, cursor, limit)
        .await
        .map_err(|e| Problem::from_core(&e, "notification", state.config.retry_after))?;
    let size = 64 + ITEM_SIZE_HINT * page.items.len();
    Ok(JsonResponse(
        HistoryPageView {
            next_cursor: page.next.map(|c| c.encode()),
            items: page.items.into_iter().map(NotificationView::from).collect(),
        },
        size,
    ))
}

/// One notification with its content: the pull of push-to-pull.
///
/// A device that names its installation in `Tidings-Installation-Id` records the fetch, which
/// cancels the visible fallback alert pending for that device (iOS raw-to-visual fallback).
#[utoipa::path(
    get,
    path = "/notifications/{id}",
    tag = "notifications",
    operation_id = "getNotification",
    params(
        ("id" = String, Path, format = Uuid, description = "The notification id the push carried."),
        ("Tidings-Installation-Id" = Option<String>, Header, description = "The calling installation; records the fetch for it. Must name one of the caller's endpoints."),
    ),
    responses(
        (status = 200, description = "The notification.", body = NotificationView),
        (status = 400, description = "The id is not a UUID, or the installation id names none of the caller's endpoints.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such notification of the caller (never existed, expired, or someone else's).", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_notification(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    NotificationPath(id): NotificationPath,
    headers: HeaderMap,
) -> Result<JsonResponse<NotificationView>, Problem> {
    let endpoint = calling_endpoint(&state, &caller, &headers).await?;
    let n = state
        .tidings
        .fetch(&caller.app, &caller.user, id, endpoint)
        .await
        .map_err(|e| Problem::from_core(&e, "notification", state.config.retry_after))?;
    Ok(JsonResponse(n.into(), ITEM_SIZE_HINT))
}

/// Changes the state of one notification (read, activated, dismissed, snoozed, deleted); the
/// user's other devices get a sync signal.
#[utoipa::path(
    patch,
    path = "/notifications/{id}",
    tag = "notifications",
    operation_id = "updateNotificationState",
    params(
        ("id" = String, Path, format = Uuid, description = "The notification."),
        ("Tidings-Installation-Id" = Option<String>, Header, description = "The installation the change comes from; it gets no sync signal for it."),
    ),
    request_body(content = schema::StatePatch, examples(
        ("dismissed" = (summary = "Dismissed (and read)", value = json!({"read": "read", "action": "dismissed"}))),
        ("read" = (summary = "Read", value = json!({"read": "read"}))),
        ("deleted" = (summary = "Deleted on every device", value = json!({"status": "deleted"})))
    )),
    responses(
        (status = 200, description = "The notification with its new state.", body = NotificationView),
        (status = 400, description = "The patch is empty or names an unknown member (`field` names it).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such notification of the caller.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the configured limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON.", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update_notification_state(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    NotificationPath(id): NotificationPath,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<StatePatch>,
) -> Result<JsonResponse<NotificationView>, Problem> {
    let origin = calling_endpoint(&state, &caller, &headers).await?;
    let n = state
        .tidings
        .update_state(&caller.app, &caller.user, id, patch, origin)
        .await
        .map_err(|e| Problem::from_core(&e, "notification", state.config.retry_after))?;
    Ok(JsonResponse(n.into(), ITEM_SIZE_HINT))
}

/// Applies one state change to many notifications ("mark all read", "clear all").
///
/// All at once: on an error none of them changed. Ids that name no notification of the caller
/// are listed in `not_found`; the others' states and sequences are in `updated`, in request
/// order (repeats once). The user's other devices get one coalesced sync signal.
#[utoipa::path(
    post,
    path = "/notifications/state",
    tag = "notifications",
    operation_id = "updateNotificationStates",
    params(
        ("Tidings-Installation-Id" = Option<String>, Header, description = "The installation the change comes from; it gets no sync signal for it."),
    ),
    request_body(content = BulkStateRequest, examples(
        ("mark read" = (summary = "Mark several read", value = json!({"ids": ["0b5b3a52-8f5e-4c1a-9d57-2f1e6a3c9b10", "6f1d9c2e-3b4a-4e5f-8a7b-9c0d1e2f3a4b"], "patch": {"read": "read"}})))
    )),
    responses(
        (status = 200, description = "What was applied.", body = BulkStateResult),
        (status = 400, description = "No ids, too many ids, or an invalid patch (`field` names it).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the configured limit.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON.", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn update_notification_states(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BulkStateRequest>,
) -> Result<Json<BulkStateResult>, Problem> {
    let max = state.config.max_bulk_ids;
    if body.ids.is_empty() || body.ids.len() > max {
        return Err(Problem::invalid(
            "ids",
            format!("invalid ids: must name 1 to {max} notifications"),
        ));
    }
    if body.patch.is_empty() {
        return Err(Problem::invalid("patch", "invalid patch: names no change"));
    }
    let origin = calling_endpoint(&state, &caller, &headers).await?;
    let mut ids = body.ids;
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(*id));

    let results = state
        .tidings
        .update_states(&caller.app, &caller.user, &ids, body.patch, origin)
        .await
        .map_err(|e| Problem::from_core(&e, "notification", state.config.retry_after))?;
    let mut result = BulkStateResult {
        updated: Vec::with_capacity(results.len()),
        not_found: Vec::new(),
    };
    for (id, n) in ids.into_iter().zip(results) {
        match n {
            Some(n) => result.updated.push(StateChange {
                id,
                state: n.state.into(),
                sequence: n.sequence,
            }),
            None => result.not_found.push(id),
        }
    }
    Ok(Json(result))
}

/// The change feed: the caller's notifications changed after sequence `since`, oldest change
/// first. A device that was offline (or got a sync signal) catches up with it.
#[utoipa::path(
    get,
    path = "/changes",
    tag = "notifications",
    operation_id = "listChanges",
    params(
        ("since" = Option<u64>, Query, description = "The `next_since` the device stored last (0 or absent: from the start)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)."),
    ),
    responses(
        (status = 200, description = "A page of changes.", body = ChangePageView),
        (status = 400, description = "A query parameter is invalid (`field` names it).", body = ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list_changes(
    Caller(caller): Caller,
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<JsonResponse<ChangePageView>, Problem> {
    let mut since = 0;
    let mut limit = state.config.default_page_size;
    for (name, value) in query_pairs(query.as_deref(), &["since", "limit"])? {
        if name == "since" {
            since = value.parse::<u64>().map_err(|_| {
                Problem::invalid(
                    "since",
                    "invalid since: must be a sequence number (0 or more)",
                )
            })?;
        } else {
            limit = parse_limit(&value)?;
        }
    }
    let page = state
        .tidings
        .changes(&caller.app, &caller.user, since, limit)
        .await
        .map_err(|e| Problem::from_core(&e, "notification", state.config.retry_after))?;
    let size = 64 + ITEM_SIZE_HINT * page.changes.len();
    Ok(JsonResponse(
        ChangePageView {
            changes: page
                .changes
                .into_iter()
                .map(NotificationView::from)
                .collect(),
            next_since: page.next_since,
            more: page.more,
        },
        size,
    ))
}

/// This document (OpenAPI 3.1). Needs no credential.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object)),
    security(())
)]
pub(crate) async fn openapi(State(state): State<ApiState>) -> Response {
    let mut response = state.openapi.clone().into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Answers paths the router does not have.
pub(crate) async fn fallback() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no such resource")
}
