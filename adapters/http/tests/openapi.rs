//! The OpenAPI document describes exactly what the router serves, and its examples are valid.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::Method;
use common::{Call, Harness};
use serde_json::Value;
use tidings::{
    AddressPolicy, ApnsEnvironment, Platform, Priority, PushAddress, ReadState, StatePatch, Status,
    UserAction,
};
use tidings_http::{
    openapi_document, BulkStateRequest, ChangePageView, EndpointView, HistoryPageView, HttpConfig,
    NotificationView, ProblemDocument, RegisterEndpointRequest,
};

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

fn document() -> Value {
    serde_json::to_value(openapi_document(&HttpConfig::default())).unwrap()
}

/// A concrete URI for a documented path template.
fn concrete(path: &str) -> String {
    path.replace("{installation_id}", "some-installation")
        .replace("{id}", &tidings::NotificationId::new_random().to_string())
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let h = Harness::new();
    let doc = document();
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            count += 1;
            let uri = concrete(path);
            let answer = h
                .call(Call::new(
                    method.to_uppercase().parse::<Method>().unwrap(),
                    uri,
                ))
                .await;
            if op["operationId"] == "getOpenApi" {
                assert_eq!(answer.status, 200);
                assert_eq!(answer.body, doc, "the router serves this document");
            } else {
                // Without a credential a served operation answers 401, an unrouted one 404/405.
                assert_eq!(answer.status, 401, "{method} {path}");
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} documents its 401"
                );
                assert!(
                    op["security"][0]["bearer"].is_array(),
                    "{method} {path} needs a bearer"
                );
            }
        }
    }
    assert_eq!(count, 8);
}

#[tokio::test]
async fn the_router_serves_no_undocumented_operation() {
    let h = Harness::new();
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let answer = h
                .call(
                    Call::new(
                        method.to_uppercase().parse::<Method>().unwrap(),
                        concrete(path),
                    )
                    .token("alice"),
                )
                .await;
            answer.problem(405);
        }
    }
    for uri in [
        "/",
        "/endpoints",
        "/notifications/a/b",
        "/change",
        "/openapi.yaml",
        "/health",
    ] {
        for method in METHODS {
            let answer = h
                .call(
                    Call::new(method.to_uppercase().parse::<Method>().unwrap(), uri).token("alice"),
                )
                .await;
            answer.problem(404);
        }
    }
}

/// Deserializes a request body example into the type its operation takes.
fn check_request_example(operation: &str, example: &Value) {
    match operation {
        "registerEndpoint" => {
            let body: RegisterEndpointRequest = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{operation}: {e}: {example}"));
            body.address
                .validate(&AddressPolicy::default())
                .unwrap_or_else(|e| panic!("{operation}: the example address is refused: {e}"));
        }
        "updateNotificationState" => {
            let patch: StatePatch = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{operation}: {e}: {example}"));
            assert!(!patch.is_empty());
        }
        "updateNotificationStates" => {
            let body: BulkStateRequest = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{operation}: {e}: {example}"));
            assert!(!body.ids.is_empty() && !body.patch.is_empty());
        }
        other => panic!("operation {other} takes a body this test does not know"),
    }
}

#[test]
fn every_request_example_deserializes_into_its_request_type() {
    let doc = document();
    let mut checked = 0;
    for item in doc["paths"].as_object().unwrap().values() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            let operation = op["operationId"].as_str().unwrap();
            let json = &content["application/json"];
            let mut examples: Vec<&Value> = json["examples"]
                .as_object()
                .map(|m| m.values().map(|e| &e["value"]).collect())
                .unwrap_or_default();
            if let Some(example) = json.get("example") {
                examples.push(example);
            }
            assert!(!examples.is_empty(), "{operation} has no request example");
            for example in examples {
                check_request_example(operation, example);
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} examples");
}

#[test]
fn every_schema_example_deserializes_into_its_type() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for (name, schema) in schemas {
        let mut examples: Vec<&Value> = schema["examples"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if let Some(e) = schema.get("example") {
            examples.push(e);
        }
        for example in examples {
            let e = example.clone();
            let parsed = match name.as_str() {
                "Problem" => serde_json::from_value::<ProblemDocument>(e).map(drop),
                "PushAddress" => serde_json::from_value::<PushAddress>(e).map(|a| {
                    a.validate(&AddressPolicy::default()).unwrap();
                }),
                "StatePatch" => serde_json::from_value::<StatePatch>(e).map(drop),
                "Notification" => serde_json::from_value::<NotificationView>(e).map(drop),
                "Endpoint" => serde_json::from_value::<EndpointView>(e).map(drop),
                "HistoryPage" => serde_json::from_value::<HistoryPageView>(e).map(drop),
                "ChangePage" => serde_json::from_value::<ChangePageView>(e).map(drop),
                other => panic!("schema {other} has an example this test does not check"),
            };
            parsed.unwrap_or_else(|err| panic!("{name}: {err}: {example}"));
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} schema examples");
}

/// The enum values a schema lists.
fn enum_values(doc: &Value, name: &str) -> Vec<String> {
    let mut values: Vec<String> = doc["components"]["schemas"][name]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is not an enum schema"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    values.sort();
    values
}

fn serde_names<T: serde::Serialize>(variants: &[T]) -> Vec<String> {
    let mut names: Vec<String> = variants
        .iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn enum_schemas_list_exactly_what_the_core_writes() {
    let doc = document();
    assert_eq!(
        enum_values(&doc, "ReadState"),
        serde_names(&[ReadState::Unread, ReadState::Read])
    );
    assert_eq!(
        enum_values(&doc, "UserAction"),
        serde_names(&[
            UserAction::None,
            UserAction::Activated,
            UserAction::Dismissed,
            UserAction::Snoozed
        ])
    );
    assert_eq!(
        enum_values(&doc, "Status"),
        serde_names(&[Status::Active, Status::Deleted])
    );
    assert_eq!(
        enum_values(&doc, "Priority"),
        serde_names(&[Priority::Low, Priority::Normal, Priority::High])
    );
    assert_eq!(enum_values(&doc, "Platform"), serde_names(&Platform::ALL));
    assert_eq!(
        enum_values(&doc, "ApnsEnvironment"),
        serde_names(&[ApnsEnvironment::Production, ApnsEnvironment::Sandbox])
    );
}

#[test]
fn push_address_schema_has_one_variant_per_platform() {
    let doc = document();
    let variants = doc["components"]["schemas"]["PushAddress"]["oneOf"]
        .as_array()
        .unwrap();
    let mut tags: Vec<String> = variants
        .iter()
        .map(|v| {
            v["properties"]["platform"]["enum"][0]
                .as_str()
                .unwrap_or_else(|| panic!("variant without a platform tag: {v}"))
                .to_owned()
        })
        .collect();
    tags.sort();
    assert_eq!(tags, serde_names(&Platform::ALL));
}

#[test]
fn the_server_url_is_announced() {
    let config = HttpConfig::builder()
        .server_url("/api/tidings")
        .build()
        .unwrap();
    let doc = serde_json::to_value(openapi_document(&config)).unwrap();
    assert_eq!(doc["servers"][0]["url"], "/api/tidings");
}
