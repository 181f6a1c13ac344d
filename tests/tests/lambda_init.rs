//! Every function of template.yaml starts with exactly the environment the template gives
//! it — `Globals.Function.Environment` and its own, each `!Ref` resolved as CloudFormation
//! would for a deploy (a parameter's default, or a value a deploy must pass; the table
//! and queues on moto) — plus the secret docs/DEPLOY.md tells you to create, held in
//! Secrets Manager (moto) and named by SECRETS_ARN. Each binary runs as Lambda runs it,
//! under the Runtime API emulator: init has succeeded once it polls for its first event.
//!
//! Then each variable, and each key of the secret, is taken away in turn: init either
//! still succeeds (the function does not use it) or fails with an error naming it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::ExposeSecret;
use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{FunctionProcess, HarnessError, function_binary};
use sellerhub_tests::template;
use shared::config::SECRET_NAMES;

/// A value, as a deploy would pass it, for each parameter without a default (SecretsArn
/// is the secret made on moto).
const REQUIRED_PARAMETERS: &[(&str, &str)] = &[
    ("MercadoLivreClientId", "5000000000000001"),
    (
        "MercadoLivreRedirectUri",
        "https://a1b2c3d4e5.execute-api.sa-east-1.amazonaws.com/prod/auth/callback",
    ),
    (
        "UpstashRedisRestUrl",
        "https://sa1-sellerhub-12345.upstash.io",
    ),
];

/// Functions started at once (each is a small process; moto answers them all).
const CONCURRENCY: usize = 4;

fn deploy_guide() -> String {
    let path = sellerhub_tests::runtime_api::workspace_root().join("docs/DEPLOY.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys of the secret the deploy guide creates: the `"NAME": …` lines of the JSON
/// written between `<<EOF` and `EOF` in its secret step.
fn documented_secret_keys() -> BTreeSet<String> {
    let guide = deploy_guide();
    let start = guide
        .find("> sellerhub-secret.json <<EOF")
        .expect("docs/DEPLOY.md writes the secret's JSON to sellerhub-secret.json");
    let body = &guide[start..];
    let end = body
        .find("\nEOF")
        .expect("the secret's heredoc ends with EOF");
    body[..end]
        .lines()
        .filter_map(|line| {
            let (key, _) = line.trim().strip_prefix('"')?.split_once("\":")?;
            Some(key.to_owned())
        })
        .collect()
}

/// The secret's JSON with a value in the documented form for each key.
fn secret_json(keys: &BTreeSet<String>) -> String {
    let values: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|key| {
            let value = match key.as_str() {
                // `k1:$(openssl rand -base64 32)` in the guide.
                "GRANT_ENCRYPTION_KEY" => shared::auth::GrantCipher::generate_key("k1")
                    .expose_secret()
                    .to_owned(),
                _ => shared::auth::random_token(48),
            };
            (key.clone(), value.into())
        })
        .collect();
    serde_json::Value::Object(values).to_string()
}

async fn create_secret(json: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(&moto::sdk_config().await);
    let created = client
        .create_secret()
        .name(format!("sellerhub-{}", uuid::Uuid::new_v4()))
        .secret_string(json)
        .send()
        .await
        .expect("create the secret on moto");
    created.arn().expect("the secret's ARN").to_owned()
}

/// What a deploy resolves each `!Ref` of the functions' environment to.
struct Stack {
    table: String,
    queue_url: String,
    dead_letter_url: String,
    secret_arn: String,
    parameters: Vec<(String, Option<String>, Option<String>)>,
}

impl Stack {
    fn resolve(&self, name: &str) -> Option<String> {
        match name {
            "Table" => return Some(self.table.clone()),
            "WebhookQueue" => return Some(self.queue_url.clone()),
            "WebhookDeadLetterQueue" => return Some(self.dead_letter_url.clone()),
            "SecretsArn" => return Some(self.secret_arn.clone()),
            _ => {}
        }
        let (_, default, _) = self.parameters.iter().find(|(known, ..)| known == name)?;
        default.clone().or_else(|| {
            REQUIRED_PARAMETERS
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }
}

/// Starts `binary` with exactly `env` (and moto as AWS) and waits for the end of its init:
/// Ok once it polls for an event, else the error its "init failed" log line gives.
async fn init(binary: &Path, env: &[(String, String)]) -> Result<(), String> {
    let endpoint = moto::endpoint();
    let mut vars: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // AWS itself, played by moto: not part of what the template gives.
    vars.push(("AWS_ENDPOINT_URL", &endpoint));
    let mut function = FunctionProcess::spawn(binary, &vars)
        .await
        .expect("spawn the function");
    match function.wait_ready(Duration::from_secs(60)).await {
        Ok(_) => Ok(()),
        Err(HarnessError::ProcessExited { .. } | HarnessError::InitError { .. }) => {
            let output = function.output();
            Err(output
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["message"] == "init failed")
                .and_then(|line| line["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("no \"init failed\" log line in:\n{output}")))
        }
        Err(other) => panic!("{}: {other}", binary.display()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_starts_with_the_template_environment_and_the_documented_secret() {
    let doc = template::load();
    let keys = documented_secret_keys();
    let known: BTreeSet<String> = SECRET_NAMES.iter().map(|name| name.to_string()).collect();
    assert_eq!(
        keys, known,
        "docs/DEPLOY.md's secret must hold exactly the secrets the functions know"
    );
    let (queue_url, dead_letter_url) = moto::create_queues(5).await;
    let stack = Stack {
        table: moto::create_table().await,
        queue_url,
        dead_letter_url,
        secret_arn: create_secret(&secret_json(&keys)).await,
        parameters: template::parameters(&doc),
    };
    // The values a deploy passes are values CloudFormation accepts.
    for (name, default, pattern) in &stack.parameters {
        let (Some(pattern), Some(value)) = (pattern, stack.resolve(name)) else {
            continue;
        };
        let regex = regex_lite::Regex::new(pattern).unwrap();
        assert!(regex.is_match(&value), "{name}={value:?} !~ {pattern}");
        assert!(
            default.is_some()
                || REQUIRED_PARAMETERS.iter().any(|(p, _)| p == name)
                || name == "SecretsArn",
            "{name} has no default and no value here"
        );
    }

    // For each key of the secret, a secret without it.
    let mut secrets_without = Vec::new();
    for key in &keys {
        let fewer: BTreeSet<String> = keys.iter().filter(|k| *k != key).cloned().collect();
        secrets_without.push((key.clone(), create_secret(&secret_json(&fewer)).await));
    }

    // One case per (function, what is taken away): nothing, each variable, each key.
    let mut cases = Vec::new();
    for (logical_id, function) in template::functions(&doc) {
        let binary = template::binary_name(function)
            .unwrap_or_else(|| panic!("{logical_id}: no Binary"))
            .to_owned();
        let env = template::function_environment(&doc, function, |name| stack.resolve(name))
            .unwrap_or_else(|error| panic!("{logical_id}: {error}"));
        assert!(
            env.iter().any(|(name, _)| name == "SECRETS_ARN"),
            "{logical_id} is not given SECRETS_ARN"
        );
        cases.push((binary.clone(), None, env.clone()));
        for (name, _) in &env {
            let without = env.iter().filter(|(n, _)| n != name).cloned().collect();
            cases.push((binary.clone(), Some(name.clone()), without));
        }
        for (key, arn) in &secrets_without {
            let with_that_secret = env
                .iter()
                .map(|(name, value)| match name.as_str() {
                    "SECRETS_ARN" => (name.clone(), arn.clone()),
                    _ => (name.clone(), value.clone()),
                })
                .collect();
            cases.push((binary.clone(), Some(key.clone()), with_that_secret));
        }
    }
    let binaries: BTreeSet<String> = cases.iter().map(|(binary, ..)| binary.clone()).collect();
    let paths: Vec<(String, PathBuf)> = binaries
        .into_iter()
        .map(|binary| {
            let path = function_binary(&binary, false);
            (binary, path)
        })
        .collect();
    let path_of = |binary: &str| -> PathBuf {
        paths
            .iter()
            .find(|(known, _)| known == binary)
            .map(|(_, path)| path.clone())
            .unwrap()
    };

    let outcomes: Vec<(String, Option<String>, Result<(), String>)> =
        futures_util::stream::iter(cases)
            .map(|(binary, removed, env)| {
                let path = path_of(&binary);
                async move {
                    let outcome = init(&path, &env).await;
                    (binary, removed, outcome)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;

    let mut failures = Vec::new();
    let mut required = BTreeSet::new();
    for (binary, removed, outcome) in &outcomes {
        match (removed, outcome) {
            (None, Err(error)) => failures.push(format!(
                "{binary} does not start with the template's environment: {error}"
            )),
            (Some(name), Err(error)) if !error.contains(name.as_str()) => failures.push(format!(
                "{binary} without {name}: the error does not name it: {error}"
            )),
            (Some(name), Err(_)) => {
                required.insert((binary.clone(), name.clone()));
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Taking a variable away is seen: every function needs its table (but those that
    // call no AWS service, which need nothing), and sign-in its limiter and its keys.
    for (binary, _) in &paths {
        let needs: Vec<_> = required.iter().filter(|(b, _)| b == binary).collect();
        if sellerhub_tests::template::is_standalone(binary) {
            assert!(needs.is_empty(), "{binary} needs nothing, yet: {needs:?}");
        } else {
            assert!(
                required.contains(&(binary.clone(), "TABLE_NAME".to_owned())),
                "{binary} started without TABLE_NAME"
            );
        }
    }
    for (binary, name) in [
        ("auth-login", "UPSTASH_REDIS_REST_URL"),
        ("auth-login", "SECRETS_ARN"),
        ("me", "SESSION_SIGNING_KEY"),
        ("auth-callback", "GRANT_ENCRYPTION_KEY"),
    ] {
        assert!(
            required.contains(&(binary.to_owned(), name.to_owned())),
            "{binary} started without {name}"
        );
    }
}
