//! The `web` Lambda binary, as Lambda runs it: started under a Runtime API emulator with
//! none of the configuration the other functions need (no table, queue or secret — it
//! reads none), fed real API Gateway REST proxy events for the page and an asset.

use std::time::Duration;

use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};

#[tokio::test]
async fn serves_the_page_and_its_assets_with_no_configuration_at_all() {
    let env = [
        ("LOG_LEVEL", "info"),
        // As template.yaml sets it for every function.
        ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true"),
    ];
    let mut function = FunctionProcess::spawn(function_binary("web", false), &env)
        .await
        .unwrap();

    let page = function
        .invoke(
            apigw_rest_event("GET", "/", "/", &[("accept", "text/html")], &[], None),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        page.status_code(),
        Some(200),
        "{page:?}\n{}",
        function.output()
    );
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("content-security-policy").as_deref(),
        Some(shared::handlers::web::CONTENT_SECURITY_POLICY_VALUE)
    );
    assert_eq!(
        page.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert!(
        page.body_text()
            .unwrap()
            .contains("<script type=\"module\" src=\"assets/app.js\"></script>")
    );

    let script = function
        .invoke(
            apigw_rest_event("GET", "/assets/app.js", "/assets/{name}", &[], &[], None),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(script.status_code(), Some(200), "{script:?}");
    assert_eq!(
        script.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.body_text().unwrap().contains("new EventSource("));

    let missing = function
        .invoke(
            apigw_rest_event("GET", "/assets/nope.js", "/assets/{name}", &[], &[], None),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(missing.status_code(), Some(404), "{missing:?}");
    assert_eq!(
        missing.header("content-type").as_deref(),
        Some("application/problem+json")
    );
}
