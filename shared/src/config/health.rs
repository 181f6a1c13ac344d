//! GET /health's settings.

use std::time::Duration;

use super::ConfigError;
use super::vars::Vars;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// How long a health result is served from cache.
    pub cache_for: Duration,
    /// The queue is unhealthy from this many waiting messages.
    pub max_waiting: u64,
    /// The queue is unhealthy from this many dead letters.
    pub max_dead_letters: u64,
}

impl HealthSettings {
    /// Why the queue is unhealthy, if it is: healthy while fewer than `max_waiting`
    /// messages wait and fewer than `max_dead_letters` died.
    pub fn queue_verdict(&self, visible: u64, dead_letters: u64) -> Option<&'static str> {
        if visible >= self.max_waiting {
            Some("backlog")
        } else if dead_letters >= self.max_dead_letters {
            Some("dead letters")
        } else {
            None
        }
    }
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<HealthSettings, ConfigError> {
    Ok(HealthSettings {
        cache_for: Duration::from_millis(vars.parsed("HEALTH_CACHE_MS", 5000u64)?),
        max_waiting: vars.parsed("HEALTH_MAX_WAITING", 1000u64)?,
        max_dead_letters: vars.parsed("HEALTH_MAX_DEAD_LETTERS", 100u64)?,
    })
}
