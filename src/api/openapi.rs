//! `GET /api/openapi.json`: the API contract, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they return, so it cannot
//! drift from the code. The responses many routes share (401, 403 for a
//! `Host` not allowed, 503 `overloaded`, 504 `timeout`, and 408, 413 and 415
//! for a request body) are declared once, in [`SHARED`], and added to each
//! operation they apply to.

use std::collections::btree_map::Entry;

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AnyOfBuilder, Object, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};

use super::limits::sheddable;
use super::{events, fetchers, health, prompts, session, states, status, RETRY_AFTER_SECS};
use crate::door::ErrorBody;

/// The security scheme's name in the document (the `security` attribute repeats it literally).
pub const BEARER: &str = "bearer";

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ha-fetchers",
        description = "Mirrors Home Assistant, runs data fetchers, renders LLM prompts. \
            Every route but `/api/health` and `/api/v1/session` needs `Authorization: \
            Bearer <API_TOKEN>` when API_TOKEN is set, or the console's session cookie \
            (from `POST /api/v1/session`). Failures answer `{\"error\": {\"code\", \"message\"}}`; \
            a method a path does not list answers 405 with that body and an `Allow` header."
    ),
    paths(
        health::overall,
        health::websocket_route,
        health::redis_route,
        health::mysql_health,
        status::status,
        states::list,
        states::one,
        states::domains,
        states::summary,
        events::stream,
        fetchers::list,
        fetchers::one,
        fetchers::run_one,
        fetchers::run_many,
        prompts::list,
        prompts::one,
        prompts::render,
        prompts::render_inline,
        session::get,
        session::login,
        session::logout,
        super::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme, &SharedResponses),
    security(("bearer" = [])),
    tags(
        (name = "health", description = "Liveness of the link to HA and the backing services."),
        (name = "states", description = "The mirrored Home Assistant states."),
        (name = "fetchers", description = "Data fetchers: list and run."),
        (name = "prompts", description = "Prompt templates: list and render."),
        (name = "console", description = "Console logins: the token exchanged for a session cookie."),
        (name = "meta", description = "Metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the bearer scheme the global `security` refers to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API_TOKEN setting."))
                    .build(),
            ),
        );
    }
}

/// Which operations a shared response applies to.
#[derive(Clone, Copy)]
enum AppliesTo {
    /// Those that need the bearer token (not those with an empty `security`).
    Guarded,
    /// Those the guard may shed: all but the health probes.
    Sheddable,
    /// All: the guard's deadline covers every request.
    All,
    /// Those with a request body, which the JSON extractor reads.
    WithBody,
}

/// A response several operations give, with an [`ErrorBody`].
struct Shared {
    /// The status code.
    status: &'static str,
    /// Its name under `components/responses`.
    name: &'static str,
    /// What it means.
    description: &'static str,
    /// Which operations give it.
    applies_to: AppliesTo,
    /// Whether it carries `Retry-After`.
    retry_after: bool,
}

/// The responses declared once for every operation they apply to. Where an
/// operation documents the same status itself, its own response stays and
/// gains the shared case: the descriptions joined, the headers added, and the
/// schema widened to either body when they differ.
const SHARED: &[Shared] = &[
    Shared {
        status: "401",
        name: "Unauthorized",
        description: "Missing or wrong bearer token (`unauthorized`)",
        applies_to: AppliesTo::Guarded,
        retry_after: false,
    },
    Shared {
        status: "403",
        name: "Forbidden",
        description:
            "The `Host` or `Origin` is not one in ALLOWED_HOSTS (`forbidden`): DNS rebinding",
        applies_to: AppliesTo::All,
        retry_after: false,
    },
    Shared {
        status: "408",
        name: "SlowBody",
        description: "The body did not arrive within HEADER_READ_TIMEOUT (`request_timeout`)",
        applies_to: AppliesTo::WithBody,
        retry_after: false,
    },
    Shared {
        status: "413",
        name: "BodyTooLarge",
        description: "The body is over MAX_BODY_BYTES (`payload_too_large`)",
        applies_to: AppliesTo::WithBody,
        retry_after: false,
    },
    Shared {
        status: "415",
        name: "NotJson",
        description:
            "A body sent without `content-type: application/json` (`unsupported_media_type`)",
        applies_to: AppliesTo::WithBody,
        retry_after: false,
    },
    Shared {
        status: "503",
        name: "Overloaded",
        description:
            "Every request slot is taken (`overloaded`): retry after `Retry-After` seconds",
        applies_to: AppliesTo::Sheddable,
        retry_after: true,
    },
    Shared {
        status: "504",
        name: "Timeout",
        description: "The request took longer than REQUEST_TIMEOUT (`timeout`)",
        applies_to: AppliesTo::All,
        retry_after: false,
    },
];

impl Shared {
    fn applies(&self, path: &str, op: &Operation) -> bool {
        match self.applies_to {
            AppliesTo::Guarded => !is_open(op),
            AppliesTo::Sheddable => sheddable(path),
            AppliesTo::All => true,
            AppliesTo::WithBody => op.request_body.is_some(),
        }
    }

    fn response(&self) -> Response {
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build();
        let mut r = ResponseBuilder::new()
            .description(self.description)
            .content("application/json", body);
        if self.retry_after {
            let header = HeaderBuilder::new()
                .schema(Object::with_type(Type::Integer))
                .description(Some(format!(
                    "Seconds to wait before retrying ({RETRY_AFTER_SECS})"
                )))
                .build();
            r = r.header("Retry-After", header);
        }
        r.build()
    }

    /// Adds this response to `op`: a reference when `op` has none for the
    /// status, else merged into the one `op` has.
    fn add_to(&self, op: &mut Operation) {
        let own = match op.responses.responses.entry(self.status.to_string()) {
            Entry::Vacant(v) => {
                v.insert(RefOr::Ref(Ref::from_response_name(self.name)));
                return;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        let RefOr::T(own) = own else {
            return; // already a shared response
        };
        let shared = self.response();
        own.description = format!(
            "{}; or {}",
            own.description,
            lower_first(&shared.description)
        );
        own.headers.extend(shared.headers);
        for (kind, content) in shared.content {
            let Some(mine) = own.content.get_mut(&kind) else {
                own.content.insert(kind, content);
                continue;
            };
            if mine.schema != content.schema {
                let either = mine
                    .schema
                    .take()
                    .into_iter()
                    .chain(content.schema)
                    .fold(AnyOfBuilder::new(), |b, s| b.item(s));
                mine.schema = Some(either.into());
            }
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

/// Whether an operation overrides the global bearer requirement with an empty one.
fn is_open(op: &Operation) -> bool {
    op.security
        .as_ref()
        .is_some_and(|reqs| reqs.iter().all(|r| *r == SecurityRequirement::default()))
}

/// Adds [`SHARED`] to `components/responses` and to the operations they apply to.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                for shared in SHARED {
                    if shared.applies(path, op) {
                        shared.add_to(op);
                    }
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        for shared in SHARED {
            components
                .responses
                .insert(shared.name.to_string(), RefOr::T(shared.response()));
        }
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"),
    )
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
