//! How failed calls are retried: exponential backoff with full jitter. backon supplies the
//! exponential schedule and the retry loop; its own jitter adds to the delay (`d..2d`),
//! so full jitter — a uniform draw in `0..d`, which spreads the retries of many callers
//! best — is applied on top here.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

pub use crate::config::RetryPolicy;

impl RetryPolicy {
    /// The delays before each retry.
    pub fn backoff(&self) -> FullJitter {
        self.backoff_with(fastrand::Rng::new())
    }

    fn backoff_with(&self, rng: fastrand::Rng) -> FullJitter {
        let retries = usize::try_from(self.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        FullJitter {
            caps: ExponentialBuilder::default()
                .with_factor(2.0)
                .with_min_delay(self.base_delay)
                .with_max_delay(self.max_delay)
                .with_max_times(retries)
                .build(),
            rng,
        }
    }
}

/// An exponential schedule where each delay is drawn uniformly below its cap.
#[derive(Debug)]
pub struct FullJitter {
    caps: ExponentialBackoff,
    rng: fastrand::Rng,
}

impl Iterator for FullJitter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.caps.next().map(|cap| cap.mul_f64(self.rng.f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
    };

    #[test]
    fn there_is_one_delay_per_retry_each_below_its_exponential_cap() {
        let caps = [100, 200, 400, 800, 1000].map(Duration::from_millis);
        for seed in 0..200 {
            let delays: Vec<Duration> = POLICY
                .backoff_with(fastrand::Rng::with_seed(seed))
                .collect();
            assert_eq!(delays.len(), 5);
            for (delay, cap) in delays.iter().zip(caps) {
                assert!(*delay < cap, "seed {seed}: {delay:?} ≥ {cap:?}");
            }
        }
        let once = RetryPolicy {
            max_attempts: 1,
            ..POLICY
        };
        assert_eq!(once.backoff().count(), 0);
    }

    #[test]
    fn the_jitter_is_full_spreading_delays_down_to_zero() {
        let mut rng = fastrand::Rng::with_seed(7);
        let firsts: Vec<Duration> = (0..500)
            .filter_map(|_| POLICY.backoff_with(rng.fork()).next())
            .collect();
        let min = firsts.iter().min().copied().unwrap_or_default();
        let max = firsts.iter().max().copied().unwrap_or_default();
        assert!(min < Duration::from_millis(5), "{min:?}");
        assert!(max > Duration::from_millis(95), "{max:?}");
    }
}
