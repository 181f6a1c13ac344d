//! THE route table: every HTTP route and the function that serves it. The local runner
//! routes by it, and a test asserts template.yaml declares exactly these routes.

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
];
