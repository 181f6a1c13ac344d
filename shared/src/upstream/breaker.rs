//! A circuit breaker: after `failure_threshold` consecutive failures it opens and refuses
//! every call for `open_for`; then it lets a single probe through at a time (half-open) and
//! closes after `success_threshold` consecutive successful probes, or re-opens on a failed
//! one. Time is an argument (ms since the epoch), so tests drive it without sleeping.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use crate::config::BreakerPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until_ms: i64 },
    HalfOpen { successes: u32, probing: bool },
}

/// Why a call may not go out now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Open: no call until `retry_after` has passed.
    Open { retry_after: Duration },
    /// Half-open and the single probe is still out.
    Probing,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    policy: BreakerPolicy,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker; `name` (the dependency) appears in its log lines.
    pub fn new(name: &'static str, policy: BreakerPolicy) -> Self {
        Self {
            name,
            policy: BreakerPolicy {
                failure_threshold: policy.failure_threshold.max(1),
                open_for: policy.open_for,
                success_threshold: policy.success_threshold.max(1),
            },
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn state(&self, now_ms: i64) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until_ms } if now_ms < until_ms => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Leave to make one call. The permit must be settled with its outcome; one dropped
    /// unsettled (a call that never reached the dependency) counts for nothing.
    pub fn acquire(&self, now_ms: i64) -> Result<Permit<'_>, Refusal> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(self.permit(false)),
            State::Open { until_ms } if now_ms < until_ms => Err(Refusal::Open {
                retry_after: Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0)),
            }),
            State::Open { .. } => {
                *state = State::HalfOpen {
                    successes: 0,
                    probing: true,
                };
                tracing::info!(dependency = self.name, "circuit half-open: probing");
                Ok(self.permit(true))
            }
            State::HalfOpen { probing: true, .. } => Err(Refusal::Probing),
            State::HalfOpen {
                successes,
                probing: false,
            } => {
                *state = State::HalfOpen {
                    successes,
                    probing: true,
                };
                Ok(self.permit(true))
            }
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            settled: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a plain value, valid whatever panicked while holding the lock.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn settle(&self, probe: bool, outcome: Outcome, now_ms: i64) {
        let mut state = self.lock();
        match (*state, outcome) {
            (State::Closed { .. }, Outcome::Success) => *state = State::Closed { failures: 0 },
            (State::Closed { failures }, Outcome::Failure) => {
                let failures = failures + 1;
                if failures >= self.policy.failure_threshold {
                    *state = self.opened(now_ms);
                    tracing::warn!(
                        dependency = self.name,
                        failures,
                        "circuit opened after consecutive failures"
                    );
                } else {
                    *state = State::Closed { failures };
                }
            }
            // A call let through before the circuit opened tells nothing about now.
            (State::Open { .. } | State::HalfOpen { .. }, _) if !probe => {}
            (State::HalfOpen { successes, .. }, Outcome::Success) => {
                let successes = successes + 1;
                if successes >= self.policy.success_threshold {
                    *state = State::Closed { failures: 0 };
                    tracing::info!(dependency = self.name, "circuit closed");
                } else {
                    *state = State::HalfOpen {
                        successes,
                        probing: false,
                    };
                }
            }
            (State::HalfOpen { .. }, Outcome::Failure) => {
                *state = self.opened(now_ms);
                tracing::warn!(dependency = self.name, "circuit re-opened: probe failed");
            }
            (State::HalfOpen { successes, .. }, Outcome::Neutral) => {
                *state = State::HalfOpen {
                    successes,
                    probing: false,
                };
            }
            (State::Closed { .. } | State::Open { .. }, _) => {}
        }
    }

    fn opened(&self, now_ms: i64) -> State {
        let open_for = i64::try_from(self.policy.open_for.as_millis()).unwrap_or(i64::MAX);
        State::Open {
            until_ms: now_ms.saturating_add(open_for),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Neutral,
}

/// Leave for one call, from [`CircuitBreaker::acquire`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// The dependency answered as a healthy service does (including a 4xx).
    pub fn succeeded(mut self, now_ms: i64) {
        self.settle(Outcome::Success, now_ms);
    }

    /// The dependency failed (5xx, timeout, connection error).
    pub fn failed(mut self, now_ms: i64) {
        self.settle(Outcome::Failure, now_ms);
    }

    fn settle(&mut self, outcome: Outcome, now_ms: i64) {
        self.settled = true;
        self.breaker.settle(self.probe, outcome, now_ms);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // The time is irrelevant: a neutral outcome never opens the circuit.
            self.breaker.settle(self.probe, Outcome::Neutral, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(30);

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerPolicy {
                failure_threshold: 5,
                open_for: OPEN_FOR,
                success_threshold: 3,
            },
        )
    }

    fn fail(breaker: &CircuitBreaker, times: u32, now_ms: i64) {
        for _ in 0..times {
            breaker.acquire(now_ms).unwrap().failed(now_ms);
        }
    }

    #[test]
    fn opens_after_exactly_the_threshold_of_consecutive_failures() {
        let breaker = breaker();
        fail(&breaker, 4, 0);
        assert_eq!(breaker.state(0), CircuitState::Closed);
        fail(&breaker, 1, 0);
        assert_eq!(breaker.state(0), CircuitState::Open);
        assert_eq!(
            breaker.acquire(10_000).unwrap_err(),
            Refusal::Open {
                retry_after: Duration::from_secs(20)
            }
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = breaker();
        fail(&breaker, 4, 0);
        breaker.acquire(0).unwrap().succeeded(0);
        fail(&breaker, 4, 0);
        assert_eq!(breaker.state(0), CircuitState::Closed);
    }

    #[test]
    fn after_the_delay_a_single_probe_goes_out_and_three_successes_close() {
        let breaker = breaker();
        fail(&breaker, 5, 0);
        let reopen_at = 30_000;
        assert!(breaker.acquire(reopen_at - 1).is_err());
        assert_eq!(breaker.state(reopen_at), CircuitState::HalfOpen);

        for probe in 1..=3 {
            let permit = breaker.acquire(reopen_at).unwrap();
            assert_eq!(
                breaker.acquire(reopen_at).unwrap_err(),
                Refusal::Probing,
                "probe {probe}: only one at a time"
            );
            permit.succeeded(reopen_at);
            let expected = if probe < 3 {
                CircuitState::HalfOpen
            } else {
                CircuitState::Closed
            };
            assert_eq!(breaker.state(reopen_at), expected);
        }
        // Closed: calls go out concurrently again.
        let _first = breaker.acquire(reopen_at).unwrap();
        let _second = breaker.acquire(reopen_at).unwrap();
    }

    #[test]
    fn a_failed_probe_reopens_for_the_whole_delay() {
        let breaker = breaker();
        fail(&breaker, 5, 0);
        breaker.acquire(30_000).unwrap().succeeded(30_000);
        breaker.acquire(40_000).unwrap().failed(40_000);
        assert_eq!(
            breaker.acquire(40_000).unwrap_err(),
            Refusal::Open {
                retry_after: OPEN_FOR
            }
        );
        // The successes before the failed probe no longer count.
        for _ in 0..2 {
            breaker.acquire(70_000).unwrap().succeeded(70_000);
        }
        assert_eq!(breaker.state(70_000), CircuitState::HalfOpen);
    }

    #[test]
    fn an_unsettled_probe_frees_its_slot_without_counting() {
        let breaker = breaker();
        fail(&breaker, 5, 0);
        drop(breaker.acquire(30_000).unwrap());
        assert_eq!(breaker.state(30_000), CircuitState::HalfOpen);
        for _ in 0..3 {
            breaker.acquire(30_000).unwrap().succeeded(30_000);
        }
        assert_eq!(breaker.state(30_000), CircuitState::Closed);
    }

    #[test]
    fn calls_let_through_before_opening_do_not_move_a_half_open_circuit() {
        let breaker = breaker();
        let stale_success = breaker.acquire(0).unwrap();
        let stale_failure = breaker.acquire(0).unwrap();
        fail(&breaker, 5, 0);
        let probe = breaker.acquire(30_000).unwrap();
        stale_failure.failed(30_000);
        stale_success.succeeded(30_000);
        assert_eq!(breaker.state(30_000), CircuitState::HalfOpen);
        assert_eq!(breaker.acquire(30_000).unwrap_err(), Refusal::Probing);
        probe.succeeded(30_000);
    }
}
