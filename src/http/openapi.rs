//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API, for n8n and other clients to
//! import. utoipa derives it from the handlers' own request, answer and error types and their
//! `#[utoipa::path]` attributes, so it follows the code; what those cannot say (the error
//! answers of each route, derived from [`super::status`], the security schemes and `/mcp`,
//! which is an rmcp service rather than a handler) is added here, also from code.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, PathItem, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use super::{mcp, status, ErrorBody};
use crate::identity::{API_KEY_HEADER, USER_HEADER};
use crate::refusal::ErrorCode;

pub const PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rowgate",
        description = "A gateway that makes AI-agent SQL safe: every table the agent's query reads becomes a read of the caller's permission view, run read-only as a least-privileged role. Every error is `{\"error\": {\"code\", \"message\", \"hint\"}}`; the hint says how to fix the request."
    ),
    paths(
        super::query::handle,
        super::schema::handle,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        handle,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&Additions),
)]
struct ApiDoc;

/// The error codes each route can answer with. `/v1/query` runs the whole pipeline, so every
/// code; tests/openapi.rs checks that every code is documented somewhere.
fn error_codes(path: &str) -> Vec<ErrorCode> {
    use ErrorCode::*;
    match path {
        "/v1/query" => ErrorCode::ALL.to_vec(),
        "/v1/schema" => vec![
            InvalidRequest,
            Unauthorized,
            InvalidToken,
            UserMismatch,
            UnknownUser,
            QueryTimeout,
            DatabaseUnavailable,
            PolicyOutOfDate,
        ],
        "/readyz" => vec![DatabaseUnavailable, PolicyOutOfDate],
        mcp::PATH => vec![InvalidRequest, Unauthorized, InvalidToken, UserMismatch],
        _ => Vec::new(),
    }
}

struct Additions;

impl Modify for Additions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from ROWGATE_API_KEYS or, with JWT verification on, the signed-in user's token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Rowgate-Api-Key",
                "The API key, when JWT verification is on and API keys are configured too.",
            ))),
        );
        debug_assert_eq!(API_KEY_HEADER, "x-rowgate-api-key");
        doc.paths.paths.insert(mcp::PATH.into(), mcp_path());
        for (path, item) in doc.paths.paths.iter_mut() {
            let codes = error_codes(path);
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (status, response) in error_responses(&codes) {
                    operation.responses.responses.insert(status, response);
                }
            }
        }
    }
}

/// One response per status, naming the codes that answer with it.
fn error_responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(status(*code).as_u16())
            .or_default()
            .push(*code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
            let response = ResponseBuilder::new()
                .description(format!("Error codes: {}.", names.join(", ")))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

fn mcp_path() -> PathItem {
    let any_object = ObjectBuilder::new().schema_type(Type::Object).build();
    let operation = OperationBuilder::new()
        .operation_id(Some("mcp"))
        .summary(Some("Model Context Protocol (streamable HTTP, stateless, JSON answers)"))
        .description(Some(
            "A JSON-RPC 2.0 message of the Model Context Protocol. Tools: `query`, `dry_run` and `describe_schema`, which run the code of /v1/query and /v1/schema. The caller is the verified token's, or the `X-Rowgate-User` header's with an API key; a tool argument never names the caller.",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("X-Rowgate-User")
                .parameter_in(ParameterIn::Header)
                .description(Some(
                    "The chat user's id, when no JWT names the caller.",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
        )
        .request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(any_object.clone())).build(),
                )
                .required(Some(utoipa::openapi::Required::True))
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The JSON-RPC answer; a refused query is a tool result with `isError` carrying the error body.")
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(any_object)).build(),
                )
                .build(),
        )
        .security(utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        ))
        .build();
    debug_assert_eq!(USER_HEADER, "x-rowgate-user");
    PathItem::new(HttpMethod::Post, operation)
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default());

/// The OpenAPI document (this endpoint needs no credentials: it describes, it reveals nothing).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    responses((status = 200, description = "This document.", body = Object)),
)]
pub async fn handle() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}
