//! Retry policy for chunks: exponential backoff with jitter (the guide's `RetryConfig`).

use std::time::Duration;

use rand::Rng;

/// How a failed chunk is retried: `max_retries` after the first attempt, waiting
/// `initial_delay × 2^(n-1)` capped at `max_delay`, each wait jittered down by up to half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Whether transient failures are retried at all.
    pub enabled: bool,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub initial_delay: Duration,
    /// Cap on any backoff.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_retries: 3,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// Retries allowed after the first attempt (0 when retries are disabled).
    pub fn allowed_retries(&self) -> u32 {
        if self.enabled {
            self.max_retries
        } else {
            0
        }
    }

    /// The un-jittered backoff before retry number `retry` (1-based).
    pub fn base_delay(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(30);
        let delay = self.initial_delay.saturating_mul(1u32 << shift);
        delay.min(self.max_delay)
    }

    /// The backoff before retry number `retry`, jittered into `[base/2, base]`.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(retry);
        base.mul_f64(rng.random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = RetryConfig {
            enabled: true,
            max_retries: 5,
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
        };
        assert_eq!(cfg.base_delay(1), Duration::from_secs(2));
        assert_eq!(cfg.base_delay(2), Duration::from_secs(4));
        assert_eq!(cfg.base_delay(3), Duration::from_secs(8));
        assert_eq!(cfg.base_delay(4), Duration::from_secs(10));
        assert_eq!(cfg.base_delay(60), Duration::from_secs(10));
        let mut rng = rand::rng();
        for n in 1..8 {
            let d = cfg.delay(n, &mut rng);
            assert!(d <= cfg.base_delay(n) && d >= cfg.base_delay(n) / 2);
        }
    }

    #[test]
    fn disabled_means_no_retries() {
        let cfg = RetryConfig {
            enabled: false,
            ..RetryConfig::default()
        };
        assert_eq!(cfg.allowed_retries(), 0);
    }
}
