//! THE route table — every HTTP route and the function that serves it — and the worker
//! table — every other function and what triggers it. The local runner serves and runs
//! by them, and tests assert template.yaml declares exactly these.

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
        path: "/v1/me",
        function: "me",
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
];
