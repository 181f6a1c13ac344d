//! A client of Upstash's Redis REST API: a command is a JSON array of strings POSTed to
//! the database's URL, answered by `{"result": …}` or `{"error": "…"}` (an `"error"` of
//! `null` is no error); `/pipeline` takes an array of commands. Scripts run by EVALSHA,
//! falling back to EVAL (which also loads the script again) when Redis has lost its
//! script cache.
//!
//! The token is sent as a Bearer header and is never part of a Debug print, a log line or
//! an error.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::LimiterError;
use crate::tls::Tls;

#[derive(Clone, Debug)]
pub struct UpstashConfig {
    /// UPSTASH_REDIS_REST_URL, e.g. `https://eu1-xyz.upstash.io`.
    pub url: String,
    /// UPSTASH_REDIS_REST_TOKEN.
    pub token: SecretString,
    pub connect_timeout: Duration,
    /// The whole request, connection included.
    pub request_timeout: Duration,
    /// The certificate authorities its server must chain to.
    pub tls: Tls,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstashError {
    /// HTTP 401: the token is wrong or lacks the right.
    #[error("Upstash refused the token (401 Unauthorized)")]
    Unauthorized,
    /// HTTP 400 or an `{"error"}` answer: Redis (or Upstash) rejected the command.
    #[error("Upstash rejected the command: {0}")]
    Rejected(String),
    /// Connection refused, timeout, 5xx, 429: worth trying again later.
    #[error("Upstash unavailable: {0}")]
    Unavailable(String),
    /// An answer that is not Upstash's JSON shape.
    #[error("unexpected answer from Upstash: {0}")]
    Protocol(String),
}

impl UpstashError {
    /// Redis lost the script (a restart, SCRIPT FLUSH, a failover): EVAL it again.
    pub fn is_noscript(&self) -> bool {
        matches!(self, Self::Rejected(text) if text.contains("NOSCRIPT"))
    }
}

impl From<UpstashError> for LimiterError {
    fn from(error: UpstashError) -> Self {
        match error {
            UpstashError::Unauthorized | UpstashError::Rejected(_) => {
                LimiterError::Rejected(error.to_string())
            }
            UpstashError::Unavailable(_) | UpstashError::Protocol(_) => {
                LimiterError::Unavailable(error.to_string())
            }
        }
    }
}

/// A Lua script and its SHA-1, the name EVALSHA knows it by.
#[derive(Clone, Debug)]
pub struct Script {
    source: &'static str,
    sha1: String,
}

impl Script {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            sha1: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }

    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    pub fn source(&self) -> &'static str {
        self.source
    }
}

#[derive(Clone, Debug)]
pub struct Upstash {
    command_url: String,
    pipeline_url: String,
    token: SecretString,
    request_timeout: Duration,
    http: reqwest::Client,
}

impl Upstash {
    /// A client on an HTTP client of its own (the composition root makes one per process).
    pub fn new(config: UpstashConfig) -> Result<Self, UpstashError> {
        let http = crate::outbound::http_client(&config.tls, config.connect_timeout)
            .map_err(|error| UpstashError::Unavailable(format!("HTTP client: {error}")))?;
        Ok(Self::with_http_client(config, http))
    }

    /// A client on an HTTP client of its own (tests: separate connection pools stand for
    /// separate Lambda instances).
    pub fn with_http_client(config: UpstashConfig, http: reqwest::Client) -> Self {
        let base = config.url.trim_end_matches('/');
        Self {
            command_url: format!("{base}/"),
            pipeline_url: format!("{base}/pipeline"),
            token: config.token,
            request_timeout: config.request_timeout,
            http,
        }
    }

    /// Runs one command (`["GET", "key"]`) and returns its result.
    pub async fn command<S: AsRef<str>>(&self, command: &[S]) -> Result<Value, UpstashError> {
        let body = strings(command);
        let answer =
            crate::telemetry::observe("upstash", "command", self.post(&self.command_url, &body))
                .await?;
        result_of(answer)
    }

    /// Runs several commands in one round trip (not a transaction): one result per command.
    pub async fn pipeline<S: AsRef<str>>(
        &self,
        commands: &[Vec<S>],
    ) -> Result<Vec<Result<Value, UpstashError>>, UpstashError> {
        let body = Value::Array(commands.iter().map(|command| strings(command)).collect());
        let answer =
            crate::telemetry::observe("upstash", "pipeline", self.post(&self.pipeline_url, &body))
                .await?;
        match answer {
            Value::Array(answers) if answers.len() == commands.len() => {
                Ok(answers.into_iter().map(result_of).collect())
            }
            other => Err(UpstashError::Protocol(format!(
                "expected {} pipeline results, got {}",
                commands.len(),
                shape(&other)
            ))),
        }
    }

    /// Runs `script` by EVALSHA; if Redis no longer has it, by EVAL (one more round trip,
    /// after which EVALSHA finds it again).
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Value, UpstashError> {
        let command = |verb: &str, body: &str| {
            let mut command = Vec::with_capacity(3 + keys.len() + args.len());
            command.extend([verb.to_owned(), body.to_owned(), keys.len().to_string()]);
            command.extend(keys.iter().cloned());
            command.extend(args.iter().cloned());
            command
        };
        match self.command(&command("EVALSHA", script.sha1())).await {
            Err(error) if error.is_noscript() => {
                tracing::info!(
                    sha1 = script.sha1(),
                    "Redis lost the script: EVAL loads it again"
                );
                self.command(&command("EVAL", script.source())).await
            }
            other => other,
        }
    }

    async fn post(&self, url: &str, body: &Value) -> Result<Value, UpstashError> {
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose_secret())
            .timeout(self.request_timeout)
            .json(body)
            .send()
            .await
            .map_err(|error| UpstashError::Unavailable(transport_error(&error)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| UpstashError::Unavailable(transport_error(&error)))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(UpstashError::Unauthorized);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(UpstashError::Unavailable(format!("HTTP {status}")));
        }
        let answer: Value = serde_json::from_str(&text).map_err(|_| {
            UpstashError::Protocol(format!("HTTP {status} with a body that is not JSON"))
        })?;
        if status.is_success() {
            return Ok(answer);
        }
        Err(match error_text(&answer) {
            Some(text) if status == reqwest::StatusCode::BAD_REQUEST => {
                UpstashError::Rejected(text)
            }
            Some(text) => UpstashError::Rejected(format!("HTTP {status}: {text}")),
            None => UpstashError::Protocol(format!("HTTP {status} without an error")),
        })
    }
}

fn strings<S: AsRef<str>>(command: &[S]) -> Value {
    Value::Array(
        command
            .iter()
            .map(|part| Value::String(part.as_ref().to_owned()))
            .collect(),
    )
}

/// The answer's error, if it has one: `"error": null` is none (as Upstash's own clients
/// read it).
fn error_text(answer: &Value) -> Option<String> {
    match answer.get("error")? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn result_of(answer: Value) -> Result<Value, UpstashError> {
    if let Some(text) = error_text(&answer) {
        return Err(UpstashError::Rejected(text));
    }
    match answer {
        Value::Object(mut fields) if fields.contains_key("result") => {
            Ok(fields.remove("result").unwrap_or(Value::Null))
        }
        other => Err(UpstashError::Protocol(format!(
            "expected {{\"result\"}}, got {}",
            shape(&other)
        ))),
    }
}

/// What kind of JSON value it is, without its content (which may be large or private).
fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The error's own text names the URL (never the token, which is only in a header).
    format!("{kind}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_results_or_typed_errors() {
        assert_eq!(
            result_of(serde_json::json!({"result": 5})).unwrap(),
            serde_json::json!(5)
        );
        assert_eq!(
            result_of(serde_json::json!({"result": null})).unwrap(),
            Value::Null
        );
        assert_eq!(
            result_of(serde_json::json!({"result": "OK", "error": null})).unwrap(),
            serde_json::json!("OK"),
            "an error of null is no error"
        );
        assert!(matches!(
            result_of(serde_json::json!({"error": null})),
            Err(UpstashError::Protocol(_))
        ));
        let error =
            result_of(serde_json::json!({"error": "NOSCRIPT No matching script"})).unwrap_err();
        assert!(error.is_noscript(), "{error}");
        assert!(matches!(
            result_of(serde_json::json!([1])),
            Err(UpstashError::Protocol(_))
        ));
    }

    #[test]
    fn a_script_is_named_by_the_sha1_redis_gives_it() {
        // SHA-1 of "return 1", as SCRIPT LOAD reports it.
        assert_eq!(
            Script::new("return 1").sha1(),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn the_token_never_prints() {
        let upstash = Upstash::with_http_client(
            UpstashConfig {
                url: "http://127.0.0.1:1".into(),
                token: SecretString::from("very-secret-token"),
                connect_timeout: Duration::from_millis(300),
                request_timeout: Duration::from_secs(1),
                tls: Tls::default(),
            },
            reqwest::Client::new(),
        );
        assert!(!format!("{upstash:?}").contains("very-secret-token"));
    }
}
