//! The webhook worker's timing (see `crate::webhooks::deferral`).

use std::time::Duration;

use super::ConfigError;
use super::vars::Vars;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// WEBHOOK_RETRY_FIRST_MS: how long a failed record stays hidden after its first
    /// failure (then 4 times longer after each, at most 15 minutes).
    pub first_retry: Duration,
    /// WEBHOOK_DEFER_FIRST_MS: the delay of work's first deferral (then doubling; SQS
    /// counts delays in whole seconds).
    pub first_deferral: Duration,
    /// WEBHOOK_DEFER_MAX_MS: the longest deferral (SQS's maximum delay, 15 minutes, is
    /// also the most it may be).
    pub max_deferral: Duration,
    /// WEBHOOK_WORKER_TIMEOUT_MS: how long one batch may run, the worker function's
    /// Timeout (template.yaml sets it in Lambda; the local runner reads it here). A
    /// received batch stays hidden 6 times this, as the webhook queue's visibility
    /// timeout is in template.yaml.
    pub timeout: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_secs(30),
            first_deferral: Duration::from_secs(15),
            max_deferral: Duration::from_secs(900),
            timeout: Duration::from_secs(30),
        }
    }
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<WorkerSettings, ConfigError> {
    let defaults = WorkerSettings::default();
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let max_deferral = vars.millis("WEBHOOK_DEFER_MAX_MS", millis(defaults.max_deferral))?;
    if max_deferral > defaults.max_deferral {
        return Err(ConfigError::Invalid {
            name: "WEBHOOK_DEFER_MAX_MS",
            reason: "at most 900000 (SQS delays messages 15 minutes at most)".into(),
        });
    }
    Ok(WorkerSettings {
        first_retry: vars.millis("WEBHOOK_RETRY_FIRST_MS", millis(defaults.first_retry))?,
        first_deferral: vars.millis("WEBHOOK_DEFER_FIRST_MS", millis(defaults.first_deferral))?,
        max_deferral,
        timeout: vars.millis("WEBHOOK_WORKER_TIMEOUT_MS", millis(defaults.timeout))?,
    })
}
