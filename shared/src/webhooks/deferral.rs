//! When work goes back on the queue, and for how long.
//!
//! Deferred work (rate limited, Mercado Livre unavailable, claimed by another attempt) is
//! re-sent as a new message with a delay and the delivered one acknowledged: a deferral
//! never counts as a failed attempt, so it never pushes a message toward the DLQ. A real
//! failure stays on its message: hidden for a growing backoff (its visibility timeout),
//! then delivered again, and sent to the DLQ by the worker after [`MAX_ATTEMPTS`].

use std::time::Duration;

use super::Envelope;
use crate::config::WorkerSettings;
use crate::queue::{MAX_DELAY_SECONDS, OutMessage};

/// Failed attempts before the worker dead-letters an envelope. The queue's
/// maxReceiveCount (5) is only the backstop for crashes.
pub const MAX_ATTEMPTS: u32 = 3;

const MAX_DELAY: Duration = Duration::from_secs(MAX_DELAY_SECONDS as u64);

/// The delay of an envelope's next deferral: at least what was asked for, doubling from
/// the first deferral's (15 s) with each one, with up to 20% jitter so deferred work does
/// not come back all at once, and at most the longest deferral (15 minutes).
pub fn deferral_delay(settings: &WorkerSettings, deferrals: u32, asked: Duration) -> Duration {
    let grown = settings
        .first_deferral
        .saturating_mul(2u32.saturating_pow(deferrals.min(16)));
    let wait = grown.max(asked);
    wait.mul_f64(1.0 + fastrand::f64() * 0.2)
        .min(settings.max_deferral)
}

/// How long a failed delivery stays hidden before its next attempt (`attempt` from 1):
/// the first retry's wait (30 s), 4 times longer after each attempt, at most 15 minutes.
pub fn retry_backoff(settings: &WorkerSettings, attempt: u32) -> Duration {
    let growth = 4u32.saturating_pow(attempt.saturating_sub(1).min(8));
    settings.first_retry.saturating_mul(growth).min(MAX_DELAY)
}

/// The envelope's next deferral, as a delayed message (SQS delays are whole seconds:
/// rounded up).
pub fn deferred(
    settings: &WorkerSettings,
    envelope: &Envelope,
    asked: Duration,
) -> Result<OutMessage, serde_json::Error> {
    let delay = deferral_delay(settings, envelope.deferrals, asked);
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    let mut next = envelope.clone();
    next.deferrals += 1;
    Ok(next
        .to_message()?
        .delayed(u32::try_from(seconds).unwrap_or(MAX_DELAY_SECONDS)))
}

/// The attribute a dead letter carries its attempts in; a redriven dead letter keeps it.
pub const DEAD_LETTER_ATTEMPTS: &str = "attempts";
/// The attribute a dead letter carries the last error in.
pub const DEAD_LETTER_ERROR: &str = "error";

/// What goes to the dead-letter queue: the message body exactly as delivered, with the
/// last error and the attempts as attributes.
pub fn dead_letter(body: &str, error: &str, attempts: u32) -> OutMessage {
    let error: String = error.chars().take(256).collect();
    OutMessage::new(body)
        .attribute(
            DEAD_LETTER_ERROR,
            if error.is_empty() {
                "unknown".into()
            } else {
                error
            },
        )
        .attribute(DEAD_LETTER_ATTEMPTS, attempts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferrals_grow_and_stop_at_fifteen_minutes() {
        let settings = WorkerSettings::default();
        let delays: Vec<Duration> = (0..10)
            .map(|n| deferral_delay(&settings, n, Duration::ZERO))
            .collect();
        assert!(delays[0] >= Duration::from_secs(15) && delays[0] <= Duration::from_secs(18));
        assert!(delays[1] >= Duration::from_secs(30));
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_secs(900))
        );
        assert_eq!(delays[9], Duration::from_secs(900));
        assert!(
            deferral_delay(&settings, 0, Duration::from_secs(120)) >= Duration::from_secs(120),
            "at least what was asked"
        );
    }

    #[test]
    fn retries_back_off() {
        let settings = WorkerSettings::default();
        assert_eq!(retry_backoff(&settings, 1), Duration::from_secs(30));
        assert_eq!(retry_backoff(&settings, 2), Duration::from_secs(120));
        assert_eq!(retry_backoff(&settings, 9), Duration::from_secs(900));
    }

    #[test]
    fn a_deferred_envelope_counts_its_deferrals() {
        let envelope = Envelope::from_message(
            r#"{"source":"meta","received_at_ms":1,"dedupe_key":"k","correlation_id":"c","payload":{"a":1}}"#,
        )
        .unwrap();
        let message = deferred(&WorkerSettings::default(), &envelope, Duration::ZERO).unwrap();
        assert!(message.delay_seconds >= 15);
        let next = Envelope::from_message(&message.body).unwrap();
        assert_eq!(next.deferrals, 1);
        assert_eq!(next.payload.get(), r#"{"a":1}"#);
        let dead = dead_letter("raw body", "boom", 3);
        assert_eq!(dead.body, "raw body");
        assert_eq!(dead.attributes["error"], "boom");
        assert_eq!(dead.attributes["attempts"], "3");
    }
}
