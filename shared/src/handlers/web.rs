//! `web`: the seller's inbox page — GET / and its static assets (GET /assets/{name}),
//! served by the API itself so the session cookie is same-origin. Plain HTML, CSS and
//! JavaScript under `shared/web/`, compiled into the binary: no build step, nothing
//! fetched at run time. The page calls the API with relative URLs, so it works under an
//! API Gateway stage (`/prod/`) as it does at the local runner's root.
//!
//! Every response carries a strict Content-Security-Policy (scripts, styles and images
//! from this origin only: no inline script or style, no `eval`, no DOM sink taking a
//! string — Trusted Types with no policy), `frame-ancestors 'none'` against clickjacking,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::config::ConfigError;
use crate::http::{ApiError, path_param, public_path, resource_path};
use crate::services::Services;

/// The page's policy: everything from this origin only, and only what the page uses.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../web/index.html"),
};

/// The assets, by the name in `/assets/{name}`.
const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("../../web/app.js"),
        },
    ),
    (
        "app.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../../web/app.css"),
        },
    ),
    (
        "icon.svg",
        Asset {
            content_type: "image/svg+xml",
            body: include_str!("../../web/icon.svg"),
        },
    ),
];

#[derive(Clone, Copy)]
struct Asset {
    content_type: &'static str,
    body: &'static str,
}

pub struct Web;

impl HttpHandler for Web {
    const FUNCTION: &'static str = "web";

    /// Needs nothing: no configuration, no store, no secret.
    fn build(_services: &Services) -> Result<Self, ConfigError> {
        Ok(Web)
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        match resource_path(&request).as_str() {
            "/" => index(&request),
            "/assets/{name}" => {
                let name = path_param(&request, "name")?;
                let asset = ASSETS
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, asset)| *asset)
                    .ok_or(ApiError::NotFound)?;
                respond(StatusCode::OK, asset)
            }
            _ => Err(ApiError::NotFound),
        }
    }
}

/// The page; asked for without its trailing slash (`https://…/prod`), a redirect to it
/// with one first, or its relative URLs would resolve outside the stage.
fn index(request: &Request) -> Result<Response<Body>, ApiError> {
    let path = public_path(request);
    if path.ends_with('/') {
        return respond(StatusCode::OK, INDEX);
    }
    let location = match request.uri().query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    };
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(LOCATION, location)
        .header(CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .map_err(|error| ApiError::Internal(format!("redirect: {error}")))
}

fn respond(status: StatusCode, asset: Asset) -> Result<Response<Body>, ApiError> {
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, asset.content_type)
        // Revalidated on every load: a new deploy is seen at once (the files are small).
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::Text(asset.body.to_owned()))
        .map_err(|error| ApiError::Internal(format!("web response: {error}")))?;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // frame-ancestors' older twin, for browsers that predate CSP 2.
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lambda_http::RequestExt;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
    use lambda_http::request::RequestContext;

    use super::*;

    /// A request as API Gateway delivers it: `resource` is the route, `path` what the
    /// caller asked for (the stage included when there is one).
    fn request(method: Method, resource: &str, path: &str, name: Option<&str>) -> Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.resource_path = Some(resource.to_owned());
        context.path = Some(path.to_owned());
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::Empty)
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV1(context));
        if let Some(name) = name {
            request =
                request.with_path_parameters(HashMap::from([("name".to_owned(), name.to_owned())]));
        }
        request
    }

    async fn get(
        resource: &str,
        path: &str,
        name: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        Web.handle(request(Method::GET, resource, path, name)).await
    }

    fn text(response: &Response<Body>) -> &str {
        std::str::from_utf8(response.body().as_ref()).unwrap()
    }

    fn assert_protected(response: &Response<Body>) {
        let headers = response.headers();
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_VALUE
        );
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn the_policy_allows_nothing_inline_and_no_framing() {
        let directives: Vec<&str> = CONTENT_SECURITY_POLICY_VALUE.split("; ").collect();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(directives.contains(&directive), "{directive} missing");
        }
        for loose in ["unsafe-inline", "unsafe-eval", "data:", "*"] {
            assert!(
                !CONTENT_SECURITY_POLICY_VALUE.contains(loose),
                "{loose} in the policy"
            );
        }
    }

    #[tokio::test]
    async fn the_page_is_html_with_the_security_headers() {
        let response = get("/", "/", None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_protected(&response);
        assert!(text(&response).contains("Sign in with Mercado Livre"));
        // Under a stage, with its slash: the same page.
        let staged = get("/", "/prod/", None).await.unwrap();
        assert_eq!(staged.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn under_a_stage_without_its_slash_the_page_redirects_to_it() {
        let response = get("/", "/prod", None).await.unwrap();
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[LOCATION], "/prod/");

        let mut with_query = request(Method::GET, "/", "/prod", None);
        *with_query.uri_mut() = "/prod?tab=questions".parse().unwrap();
        let response = Web.handle(with_query).await.unwrap();
        assert_eq!(response.headers()[LOCATION], "/prod/?tab=questions");
    }

    #[tokio::test]
    async fn every_asset_the_page_names_is_served_with_its_type_and_nothing_else() {
        let page = INDEX.body;
        let mut named = Vec::new();
        for attribute in ["href=\"assets/", "src=\"assets/"] {
            for (start, _) in page.match_indices(attribute) {
                let rest = &page[start + attribute.len()..];
                named.push(&rest[..rest.find('"').unwrap()]);
            }
        }
        named.sort_unstable();
        named.dedup();
        let mut served: Vec<&str> = ASSETS.iter().map(|(name, _)| *name).collect();
        served.sort_unstable();
        assert_eq!(named, served, "the page names exactly the assets served");

        for (name, asset) in ASSETS {
            let response = get("/assets/{name}", &format!("/assets/{name}"), Some(name))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[CONTENT_TYPE], asset.content_type);
            assert_protected(&response);
            assert_eq!(text(&response), asset.body);
        }
        for unknown in ["app.min.js", "../Cargo.toml", "index.html", ""] {
            let error = get("/assets/{name}", "/assets/x", Some(unknown))
                .await
                .unwrap_err();
            assert_eq!(error.status(), StatusCode::NOT_FOUND, "{unknown:?}");
        }
    }

    #[tokio::test]
    async fn only_get_is_answered() {
        let error = Web
            .handle(request(Method::POST, "/", "/", None))
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// What the policy forbids is not in the files either (the browser test proves the
    /// browser agrees): no inline script, style or handler in the page, and no script
    /// that parses HTML or code from text.
    #[test]
    fn the_files_have_no_inline_script_or_style_and_no_html_or_code_from_text() {
        let page = INDEX.body.to_lowercase();
        assert!(!page.contains("<style"), "an inline style sheet");
        assert!(!page.contains(" style="), "an inline style");
        let mut rest = page.as_str();
        while let Some(start) = rest.find("<script") {
            let tag = &rest[start..start + rest[start..].find('>').unwrap()];
            assert!(tag.contains(" src="), "an inline script: {tag}");
            rest = &rest[start + tag.len()..];
        }
        let handler = regex_lite::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(!handler.is_match(&page), "an inline event handler");
        let script = ASSETS
            .iter()
            .find(|(name, _)| *name == "app.js")
            .unwrap()
            .1
            .body;
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
        ] {
            assert!(!script.contains(sink), "app.js uses {sink}");
        }
    }
}
