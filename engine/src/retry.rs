//! Retry policies: how many times a step or a compensation is tried, and how long the mediator
//! waits between tries (exponential backoff with a cap and jitter).

use std::time::Duration;

/// How often and how patiently a step or a compensation is retried.
///
/// The delay before attempt `n + 1` is `initial_backoff * multiplier^(n - 1)`, capped at
/// `max_backoff`, then shortened by up to `jitter` of itself at random so that many sagas that
/// failed together do not retry in lockstep.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `None` retries until the work succeeds.
    pub max_attempts: Option<u32>,
    /// Delay after the first failed attempt.
    pub initial_backoff: Duration,
    /// Growth factor of the delay from one failed attempt to the next (at least 1.0).
    pub multiplier: f64,
    /// Upper bound of any single delay.
    pub max_backoff: Duration,
    /// Fraction of each delay (0.0 to 1.0) that is randomised.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Three attempts, 100 ms doubling up to 10 s, 20 % jitter.
    fn default() -> Self {
        Self {
            max_attempts: Some(3),
            initial_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The default backoff with `max_attempts` attempts in all.
    pub fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: Some(max_attempts),
            ..Self::default()
        }
    }

    /// A single attempt: the first failure is final.
    pub fn no_retry() -> Self {
        Self::attempts(1)
    }

    /// Retry until the work succeeds (what retriable steps after the pivot use).
    pub fn forever() -> Self {
        Self {
            max_attempts: None,
            ..Self::default()
        }
    }

    /// Sets the first delay and the cap of the exponential backoff.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Sets the growth factor of the backoff.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the randomised fraction of each delay.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether another attempt may follow `attempts_made` failed attempts.
    pub fn allows_another(&self, attempts_made: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempts_made < max)
    }

    /// The delay before the attempt that follows failed attempt number `failed_attempt` (1-based).
    pub fn delay_after(&self, failed_attempt: u32) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::from_secs_f64(jittered.max(0.0))
    }

    /// Explains what is wrong with the policy, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.max_attempts == Some(0) {
            return Some("max_attempts must be at least 1".into());
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Some(format!(
                "multiplier must be >= 1.0, got {}",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Some(format!(
                "jitter must be within 0.0..=1.0, got {}",
                self.jitter
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Some("initial_backoff must not exceed max_backoff".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default()
            .backoff(Duration::from_millis(100), Duration::from_millis(350))
            .jitter(0.0);
        assert_eq!(p.delay_after(1), Duration::from_millis(100));
        assert_eq!(p.delay_after(2), Duration::from_millis(200));
        assert_eq!(p.delay_after(3), Duration::from_millis(350));
        assert_eq!(p.delay_after(40), Duration::from_millis(350));
    }

    #[test]
    fn jitter_only_shortens() {
        let p = RetryPolicy::default().jitter(0.5);
        for _ in 0..100 {
            let d = p.delay_after(1);
            assert!(d <= Duration::from_millis(100) && d >= Duration::from_millis(50));
        }
    }

    #[test]
    fn attempts_are_counted() {
        let p = RetryPolicy::attempts(3);
        assert!(p.allows_another(1) && p.allows_another(2) && !p.allows_another(3));
        assert!(RetryPolicy::forever().allows_another(1_000_000));
        assert!(RetryPolicy::attempts(0).problem().is_some());
        assert!(RetryPolicy::default().jitter(2.0).problem().is_some());
    }
}
