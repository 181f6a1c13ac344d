//! Typed reads of configuration variables from a lookup, so tests pass a map instead of
//! mutating the process environment. Every error names the variable at fault.

use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

pub(crate) struct Vars<F>(pub(crate) F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// A count of at least 1.
    pub fn count(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.parsed(name, default)? {
            0 => Err(ConfigError::Invalid {
                name,
                reason: "must be at least 1".into(),
            }),
            count => Ok(count),
        }
    }

    /// A duration in whole milliseconds, at least 1.
    pub fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.parsed(name, default)? {
            0 => Err(ConfigError::Invalid {
                name,
                reason: "must be at least 1".into(),
            }),
            millis => Ok(Duration::from_millis(millis)),
        }
    }

    /// The trimmed value; unset and blank are the same.
    pub fn text(&self, name: &'static str) -> Option<String> {
        (self.0)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.text(name).ok_or(ConfigError::Missing(name))
    }

    pub fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|error: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{text:?}: {error}"),
            }),
        }
    }

    pub fn choice(
        &self,
        name: &'static str,
        default: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, ConfigError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|choice| choice.eq_ignore_ascii_case(&text))
            .copied()
            .ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("{text:?}, expected one of {}", allowed.join(", ")),
            })
    }

    /// An http(s) base URL without query or fragment, `default` when unset.
    pub fn base_url(&self, name: &'static str, default: &str) -> Result<reqwest::Url, ConfigError> {
        let text = self.text(name).unwrap_or_else(|| default.to_owned());
        let invalid = |reason: &str| ConfigError::Invalid {
            name,
            reason: format!("{text:?}: {reason}"),
        };
        let url = reqwest::Url::parse(&text).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(invalid("expected an http(s) URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        Ok(url)
    }

    /// [`Self::base_url`] when set, else None.
    pub fn optional_url(&self, name: &'static str) -> Result<Option<reqwest::Url>, ConfigError> {
        match self.text(name) {
            Some(_) => self.base_url(name, "").map(Some),
            None => Ok(None),
        }
    }
}
