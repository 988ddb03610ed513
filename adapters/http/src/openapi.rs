//! The OpenAPI 3.1 document of the client API.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{
    ContentBuilder, Object, ObjectBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::config::HttpConfig;
use crate::problem::PROBLEM_JSON;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tidings client API",
        description = "What devices call: register push addresses, pull notification content, report read/dismissed state, catch up on changes. Every operation but this document needs `Authorization: Bearer <token>`; a caller reaches only its own user's data in its own app, and anything else answers 404 exactly like a missing id. Errors are RFC 9457 problem details (`application/problem+json`).",
    ),
    paths(
        routes::register_endpoint,
        routes::delete_endpoint,
        routes::list_notifications,
        routes::get_notification,
        routes::update_notification_state,
        routes::update_notification_states,
        routes::list_changes,
        routes::openapi,
    ),
    modifiers(&CommonResponses),
    tags(
        (name = "endpoints", description = "Push addresses of the caller's app installations."),
        (name = "notifications", description = "History, content, state and the change feed."),
        (name = "meta", description = "This document."),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme and the answers every authenticated operation can give (401, 500, 503).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token the host's identity adapter accepts (a JWT for JwtIdentity).",
                    ))
                    .build(),
            ),
        );
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let string = || {
            RefOr::T(utoipa::openapi::Schema::Object(Object::with_type(
                Type::String,
            )))
        };
        let integer = || {
            RefOr::T(utoipa::openapi::Schema::Object(
                ObjectBuilder::new().schema_type(Type::Integer).build(),
            ))
        };
        components.responses.insert(
            "Unauthenticated".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "No bearer credential (the challenge has no error code), or one that was \
                         refused (`error=\"invalid_token\"` with a description: expired, bad \
                         signature, wrong issuer or audience, unknown token).",
                    )
                    .header(
                        "WWW-Authenticate",
                        HeaderBuilder::new()
                            .schema(Some(string()))
                            .description(Some("`Bearer`, with `error` and `error_description` when a token was refused."))
                            .build(),
                    )
                    .content(PROBLEM_JSON, problem())
                    .build(),
            ),
        );
        components.responses.insert(
            "Unavailable".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("The store or identity provider is unavailable; try again after Retry-After seconds.")
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(integer()))
                            .description(Some("Seconds to wait."))
                            .build(),
                    )
                    .content(PROBLEM_JSON, problem())
                    .build(),
            ),
        );
        components.responses.insert(
            "Internal".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("The server failed; the body says nothing more.")
                    .content(PROBLEM_JSON, problem())
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.operation_id.as_deref() == Some("getOpenApi") {
                    continue;
                }
                let responses = &mut op.responses.responses;
                for (status, name) in [
                    ("401", "Unauthenticated"),
                    ("500", "Internal"),
                    ("503", "Unavailable"),
                ] {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// The document for a router built with `config`.
pub fn document(config: &HttpConfig) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if let Some(url) = config.server_url() {
        doc.servers = Some(vec![Server::new(url)]);
    }
    doc
}
