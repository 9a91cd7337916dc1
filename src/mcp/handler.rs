//! The server one client talks to: what it offers, and where each request goes.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, GetPromptRequestParams, GetPromptResponse,
    Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ServerCapabilities, ServerConfig, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use super::session::{Lists, Session, MAX_SUBSCRIPTIONS};
use super::{prompts, resources, tools};
use std::sync::Arc;

use crate::engine::Engine;
use crate::state::Scope;

/// What a client is told on `initialize`.
const INSTRUCTIONS: &str = "A live mirror of a Home Assistant house. Start with live_context \
(filter by domain, area or name); search_entities finds ids; get_entity gives one entity in \
full. The other tools are the house's data fetchers. Everything is read-only.";

/// One client's server: made per session by the HTTP service (and once for
/// stdio); dropping it ends the session's watcher.
pub struct Mcp {
    /// Everything the REST API reaches; each request sees it through its
    /// token's scope.
    app: Engine,
    /// This client's subscriptions and the task that tells it of changes.
    session: Session,
    /// The scope the session was opened with (`None` inside: the admin's),
    /// set by its first request: a session is one token's, never another's.
    opened_by: std::sync::OnceLock<Option<Arc<str>>>,
}

impl Mcp {
    /// A client's server; `lists` tells its watcher when the tool or prompt list changed.
    pub fn new(app: Engine, lists: Lists) -> Self {
        Self {
            app,
            session: Session::new(lists),
            opened_by: std::sync::OnceLock::new(),
        }
    }

    /// The engine as the request's token sees it: the scope the API's
    /// middleware put on the HTTP request (none over stdio, or for the
    /// admin). A token other than the session's is refused.
    fn engine(&self, ext: &rmcp::model::Extensions) -> Result<Engine, ErrorData> {
        let scope = ext
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Arc<Scope>>())
            .cloned();
        let name = scope.as_ref().map(|s| s.name.clone());
        if *self.opened_by.get_or_init(|| name.clone()) != name {
            return Err(ErrorData::invalid_request(
                "this session was opened with another token; initialize a session of your own",
                None,
            ));
        }
        Ok(match scope {
            Some(s) => self.app.scoped(s),
            None => self.app.clone(),
        })
    }
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        if let Ok(app) = self.engine(&cx.extensions) {
            self.session.start(&app, cx.peer);
        }
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        Ok(ListToolsResult::with_all_items(tools::list(&app)))
    }

    async fn call_tool(
        &self,
        r: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        Ok(tools::call(&app, &r.name, r.arguments.unwrap_or_default())
            .await
            .into())
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        Ok(ListPromptsResult::with_all_items(prompts::list(&app)))
    }

    async fn get_prompt(
        &self,
        r: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        prompts::get(&app, &r.name, r.arguments.unwrap_or_default())
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        Ok(ListResourcesResult::with_all_items(resources::list(&app)))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        r: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let app = self.engine(&cx.extensions)?;
        resources::read(&app, &r.uri).await.map(Into::into)
    }

    // rmcp marks these deprecated for the 2026 revision's `subscriptions/listen`;
    // every client released so far subscribes this way.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        r: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let app = self.engine(&cx.extensions)?;
        resources::check_subscription(&app, &r.uri)?;
        self.session.start(&app, cx.peer);
        if !self.session.subscribe(r.uri) {
            return Err(ErrorData::invalid_request(
                format!("a session may hold at most {MAX_SUBSCRIPTIONS} subscriptions; unsubscribe from one first"),
                None,
            ));
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        r: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.unsubscribe(&r.uri);
        Ok(())
    }
}
