//! When work goes back on the queue, and for how long.
//!
//! Deferred work (rate limited, Mercado Livre unavailable, claimed by another attempt) is
//! re-sent as a new message with a delay and the delivered one acknowledged: a deferral
//! never counts as a failed attempt, so it never pushes a message toward the DLQ. A real
//! failure stays on its message: hidden for a growing backoff (its visibility timeout),
//! then delivered again, and sent to the DLQ by the worker after [`MAX_ATTEMPTS`].

use std::time::Duration;

use super::Envelope;
use crate::queue::{MAX_DELAY_SECONDS, OutMessage};

/// Failed attempts before the worker dead-letters an envelope. The queue's
/// maxReceiveCount (5) is only the backstop for crashes.
pub const MAX_ATTEMPTS: u32 = 3;

const FIRST_DEFERRAL: Duration = Duration::from_secs(15);
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// The delay of an envelope's next deferral: at least what was asked for, doubling from
/// 15 s with each deferral, at most SQS's 15 minutes, with up to 20% jitter so deferred
/// work does not come back all at once.
pub fn deferral_delay(deferrals: u32, asked: Duration) -> Duration {
    let grown = FIRST_DEFERRAL.saturating_mul(2u32.saturating_pow(deferrals.min(16)));
    let wait = grown.max(asked);
    let jittered = wait.mul_f64(1.0 + fastrand::f64() * 0.2);
    jittered.min(Duration::from_secs(u64::from(MAX_DELAY_SECONDS)))
}

/// How long a failed delivery stays hidden before its next attempt (`attempt` from 1):
/// 30 s, then 2 min, at most 15 min.
pub fn retry_backoff(attempt: u32) -> Duration {
    let grown = FIRST_RETRY.saturating_mul(4u32.saturating_pow(attempt.saturating_sub(1).min(8)));
    grown.min(Duration::from_secs(u64::from(MAX_DELAY_SECONDS)))
}

/// The envelope's next deferral, as a delayed message.
pub fn deferred(envelope: &Envelope, asked: Duration) -> Result<OutMessage, serde_json::Error> {
    let delay = deferral_delay(envelope.deferrals, asked);
    let mut next = envelope.clone();
    next.deferrals += 1;
    Ok(next
        .to_message()?
        .delayed(u32::try_from(delay.as_secs()).unwrap_or(MAX_DELAY_SECONDS)))
}

/// What goes to the dead-letter queue: the message body exactly as delivered, with the
/// last error and the attempts as attributes.
pub fn dead_letter(body: &str, error: &str, attempts: u32) -> OutMessage {
    let error: String = error.chars().take(256).collect();
    OutMessage::new(body)
        .attribute(
            "error",
            if error.is_empty() {
                "unknown".into()
            } else {
                error
            },
        )
        .attribute("attempts", attempts.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferrals_grow_and_stop_at_fifteen_minutes() {
        let delays: Vec<Duration> = (0..10).map(|n| deferral_delay(n, Duration::ZERO)).collect();
        assert!(delays[0] >= Duration::from_secs(15) && delays[0] <= Duration::from_secs(18));
        assert!(delays[1] >= Duration::from_secs(30));
        assert!(
            delays
                .iter()
                .all(|delay| *delay <= Duration::from_secs(900))
        );
        assert_eq!(delays[9], Duration::from_secs(900));
        assert!(
            deferral_delay(0, Duration::from_secs(120)) >= Duration::from_secs(120),
            "at least what was asked"
        );
    }

    #[test]
    fn retries_back_off() {
        assert_eq!(retry_backoff(1), Duration::from_secs(30));
        assert_eq!(retry_backoff(2), Duration::from_secs(120));
        assert_eq!(retry_backoff(9), Duration::from_secs(900));
    }

    #[test]
    fn a_deferred_envelope_counts_its_deferrals() {
        let envelope = Envelope::from_message(
            r#"{"source":"meta","received_at_ms":1,"dedupe_key":"k","correlation_id":"c","payload":{"a":1}}"#,
        )
        .unwrap();
        let message = deferred(&envelope, Duration::ZERO).unwrap();
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
