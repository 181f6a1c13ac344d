//! The tenant's conversations (Mercado Livre post-sale messages and WhatsApp):
//! - GET /v1/conversations?channel=mercadolivre|whatsapp&status=unread|read: most
//!   recently updated first, paginated (`limit`, `cursor`).
//! - GET /v1/conversations/{id}/messages: a conversation's messages, newest first,
//!   paginated. `{id}` is the conversation's public id, `channel:id`.
//! - POST /v1/conversations/{id}/read: its unread count goes to zero (idempotent).
//!   Counted against the tenant's write limit.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::cursor::{Cursors, Scope};
use crate::http::{
    ApiError, EndpointLimit, json, path_param, query_param, rate_limit, resource_path,
};
use crate::inbox::conversations::{self, Conversations, Filter};
use crate::inbox::{Channel, Inbox};
use crate::ratelimit::Limiter;
use crate::services::Services;

pub struct ConversationsHandler {
    authenticator: Authenticator,
    conversations: Conversations,
    inbox: Inbox,
    cursors: Arc<Cursors>,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

impl HttpHandler for ConversationsHandler {
    const FUNCTION: &'static str = "conversations";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            conversations: Conversations::new(services.store()),
            inbox: Inbox::new(services.store()),
            cursors: services.cursors()?,
            limiter: services.limiter()?,
            clock: services.clock(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(&request).await?;
        let tenant = principal.tenant();
        match (request.method(), resource_path(&request).as_str()) {
            (&Method::GET, "/v1/conversations") => self.list(&request, tenant).await,
            (&Method::GET, "/v1/conversations/{id}/messages") => {
                self.messages(&request, tenant).await
            }
            (&Method::POST, "/v1/conversations/{id}/read") => {
                self.mark_read(&request, tenant).await
            }
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

impl ConversationsHandler {
    async fn list(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let filter = filter(request)?;
        let filters = format!("{filter:?}");
        let scope = Scope {
            tenant,
            route: "GET /v1/conversations",
            filters: &filters,
        };
        let now = self.clock.now_secs();
        let page = self.cursors.page_request(request, &scope, now)?;
        let found = self
            .conversations
            .list(tenant, filter, page.limit, page.after)
            .await?;
        let items = found.items.iter().map(conversations::to_public).collect();
        let body = self
            .cursors
            .page_body(items, found.next.as_ref(), &scope, now);
        json(StatusCode::OK, &body)
    }

    async fn messages(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let public_id = path_param(request, "id")?;
        let (channel, id) = conversations::parse_id(&public_id).ok_or(ApiError::NotFound)?;
        let scope = Scope {
            tenant,
            route: "GET /v1/conversations/{id}/messages",
            filters: &public_id,
        };
        let now = self.clock.now_secs();
        let page = self.cursors.page_request(request, &scope, now)?;
        if self.conversations.get(tenant, channel, id).await?.is_none() {
            return Err(ApiError::NotFound);
        }
        let found = self
            .conversations
            .messages(tenant, channel, id, page.limit, page.after)
            .await?;
        let items = found
            .items
            .into_iter()
            .map(|item| {
                let mut data = item.data;
                data["conversation_id"] = serde_json::json!(public_id);
                data
            })
            .collect();
        let body = self
            .cursors
            .page_body(items, found.next.as_ref(), &scope, now);
        json(StatusCode::OK, &body)
    }

    async fn mark_read(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let now_ms = self.clock.now_ms();
        let limit_headers = rate_limit::enforce(
            self.limiter.as_ref(),
            &EndpointLimit::writes(tenant),
            now_ms,
        )
        .await?;
        let public_id = path_param(request, "id")?;
        let (channel, id) = conversations::parse_id(&public_id).ok_or(ApiError::NotFound)?;
        self.inbox
            .apply_conversation_read(tenant, channel, id, now_ms)
            .await?;
        // Absent when the tenant has no such conversation (whoever has one by that id).
        let conversation = self
            .conversations
            .get(tenant, channel, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let mut response = json(StatusCode::OK, &conversations::to_public(&conversation))?;
        limit_headers.apply(response.headers_mut());
        Ok(response)
    }
}

/// The listing's filters: `channel` and `status` (`unread` or `read`).
fn filter(request: &Request) -> Result<Filter, ApiError> {
    let channel = query_param(request, "channel")
        .map(|text| {
            Channel::parse(&text).ok_or_else(|| {
                ApiError::BadRequest("channel must be mercadolivre or whatsapp".into())
            })
        })
        .transpose()?;
    let unread = match query_param(request, "status").as_deref() {
        None => None,
        Some("unread") => Some(true),
        Some("read") => Some(false),
        Some(_) => {
            return Err(ApiError::BadRequest("status must be unread or read".into()));
        }
    };
    Ok(Filter { channel, unread })
}
