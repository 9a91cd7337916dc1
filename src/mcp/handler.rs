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
use crate::engine::Engine;

/// What a client is told on `initialize`.
const INSTRUCTIONS: &str = "A live mirror of a Home Assistant house. Start with live_context \
(filter by domain, area or name); search_entities finds ids; get_entity gives one entity in \
full. The other tools are the house's data fetchers. Everything is read-only.";

/// One client's server: made per session by the HTTP service (and once for
/// stdio); dropping it ends the session's watcher.
pub struct Mcp {
    /// Everything the REST API reaches.
    app: Engine,
    /// This client's subscriptions and the task that tells it of changes.
    session: Session,
}

impl Mcp {
    /// A client's server; `lists` tells its watcher when the tool or prompt list changed.
    pub fn new(app: Engine, lists: Lists) -> Self {
        Self {
            app,
            session: Session::new(lists),
        }
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
        self.session.start(&self.app, cx.peer);
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list(&self.app)))
    }

    async fn call_tool(
        &self,
        r: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(
            tools::call(&self.app, &r.name, r.arguments.unwrap_or_default())
                .await
                .into(),
        )
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(prompts::list(&self.app)))
    }

    async fn get_prompt(
        &self,
        r: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        prompts::get(&self.app, &r.name, r.arguments.unwrap_or_default())
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources::list(
            &self.app,
        )))
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
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(&self.app, &r.uri).await.map(Into::into)
    }

    // rmcp marks these deprecated for the 2026 revision's `subscriptions/listen`;
    // every client released so far subscribes this way.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        r: SubscribeRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        resources::Target::parse(&r.uri)?;
        self.session.start(&self.app, cx.peer);
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
