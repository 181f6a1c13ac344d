//! Where a finished login sends the browser: our own paths, or an allowed origin. Never
//! anywhere a request names freely (an open redirect would let a phishing link use our
//! sign-in page).

use crate::config::{AuthSettings, is_local_path};
use crate::http::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnToPolicy {
    origins: Vec<String>,
    default: String,
}

impl ReturnToPolicy {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            origins: settings.return_to_origins.clone(),
            default: settings.default_return_to.clone(),
        }
    }

    /// The target for `requested` (the default when absent), or a 400 naming why not.
    pub fn check(&self, requested: Option<&str>) -> Result<String, ApiError> {
        let Some(requested) = requested.filter(|text| !text.is_empty()) else {
            return Ok(self.default.clone());
        };
        if is_local_path(requested) {
            return Ok(requested.to_owned());
        }
        let refused = || ApiError::BadRequest("return_to is not an allowed address.".into());
        let url = reqwest::Url::parse(requested).map_err(|_| refused())?;
        let allowed = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && self.origins.contains(&url.origin().ascii_serialization());
        if allowed {
            Ok(url.into())
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReturnToPolicy {
        ReturnToPolicy {
            origins: vec!["https://app.example.com".into()],
            default: "/v1/me".into(),
        }
    }

    #[test]
    fn our_paths_and_allowed_origins_pass() {
        let policy = policy();
        assert_eq!(policy.check(None).unwrap(), "/v1/me");
        assert_eq!(policy.check(Some("")).unwrap(), "/v1/me");
        assert_eq!(policy.check(Some("/inbox?tab=2")).unwrap(), "/inbox?tab=2");
        assert_eq!(
            policy.check(Some("https://app.example.com/inbox")).unwrap(),
            "https://app.example.com/inbox"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let policy = policy();
        for target in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "http://app.example.com/",
            "https://user@app.example.com/",
            "javascript:alert(1)",
            "/ok\r\nSet-Cookie: x=y",
            "inbox",
        ] {
            assert!(
                matches!(policy.check(Some(target)), Err(ApiError::BadRequest(_))),
                "{target}"
            );
        }
    }
}
