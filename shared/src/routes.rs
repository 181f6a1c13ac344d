//! THE route table — every HTTP route and the function that serves it — and the worker
//! table — every other function and what triggers it. The local runner serves and runs
//! by them, and tests assert template.yaml declares exactly these, and that the API's
//! OpenAPI document ([`OPENAPI`]) describes exactly these routes.

/// The HTTP API's OpenAPI 3.1 document (`shared/openapi.json`), served by the local
/// runner at GET /openapi.json. A test holds its operations to [`ROUTES`]; schemathesis
/// holds the responses to it (tests/tests/api_contract.rs).
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub method: &'static str,
    /// API Gateway resource path; parameters as `{name}`.
    pub path: &'static str,
    /// The function (binary and crate under functions/) that serves it.
    pub function: &'static str,
}

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/",
        function: "web",
    },
    Route {
        method: "GET",
        path: "/assets/{name}",
        function: "web",
    },
    Route {
        method: "GET",
        path: "/health",
        function: "health",
    },
    Route {
        method: "GET",
        path: "/v1/admin/queues",
        function: "health",
    },
    Route {
        method: "GET",
        path: "/auth/login",
        function: "auth-login",
    },
    Route {
        method: "GET",
        path: "/auth/callback",
        function: "auth-callback",
    },
    Route {
        method: "POST",
        path: "/auth/logout",
        function: "auth-logout",
    },
    Route {
        method: "GET",
        path: "/auth/session",
        function: "me",
    },
    Route {
        method: "GET",
        path: "/v1/me",
        function: "me",
    },
    Route {
        method: "GET",
        path: "/v1/notifications",
        function: "notifications",
    },
    Route {
        method: "POST",
        path: "/v1/notifications/{id}/read",
        function: "notifications",
    },
    Route {
        method: "GET",
        path: "/v1/channels",
        function: "channels",
    },
    Route {
        method: "PUT",
        path: "/v1/channels/whatsapp",
        function: "channels",
    },
    Route {
        method: "GET",
        path: "/v1/questions",
        function: "questions",
    },
    Route {
        method: "POST",
        path: "/v1/questions/{id}/answer",
        function: "questions",
    },
    Route {
        method: "GET",
        path: "/v1/conversations",
        function: "conversations",
    },
    Route {
        method: "GET",
        path: "/v1/conversations/{id}/messages",
        function: "conversations",
    },
    Route {
        method: "POST",
        path: "/v1/conversations/{id}/read",
        function: "conversations",
    },
    Route {
        method: "GET",
        path: "/v1/events",
        function: "events",
    },
    Route {
        method: "POST",
        path: "/webhooks/mercadolivre",
        function: "webhook-mercadolivre",
    },
    Route {
        method: "GET",
        path: "/webhooks/meta",
        function: "webhook-meta",
    },
    Route {
        method: "POST",
        path: "/webhooks/meta",
        function: "webhook-meta",
    },
];

/// What starts a function that serves no route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// An EventBridge schedule, `rate(N minutes)` in template.yaml.
    Every { minutes: u32 },
    /// The webhook queue's records, in batches (an SQS event source).
    WebhookQueue,
}

/// A function that serves no route: a worker, and what starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Worker {
    /// The function (binary and crate under functions/).
    pub function: &'static str,
    pub trigger: Trigger,
}

/// THE worker table: the local runner starts each worker by it, and a test asserts
/// template.yaml declares exactly these functions with these triggers.
pub const WORKERS: &[Worker] = &[
    Worker {
        function: "token-refresher",
        trigger: Trigger::Every { minutes: 5 },
    },
    Worker {
        function: "webhook-worker",
        trigger: Trigger::WebhookQueue,
    },
    Worker {
        function: "reconciler",
        trigger: Trigger::Every { minutes: 15 },
    },
    Worker {
        function: "cleanup",
        trigger: Trigger::Every { minutes: 60 },
    },
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_route_table() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut described = BTreeSet::new();
        for (path, operations) in document["paths"].as_object().unwrap() {
            for (method, operation) in operations.as_object().unwrap() {
                assert!(
                    operation["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        assert_eq!(described, routed);
    }
}
