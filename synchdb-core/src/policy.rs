//! What the pipeline does when applying a batch fails.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The error policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Stop the pipeline; the checkpoint stays at the last good batch.
    #[default]
    Exit,
    /// Retry with exponential backoff, then stop as `Exit` does.
    Retry(RetryPolicy),
    /// Record the failing event (with its error and position) through
    /// [`Sink::dead_letter`](crate::Sink::dead_letter) and go on. Transient
    /// errors are retried first, as `Retry` does.
    Skip(RetryPolicy),
}

impl std::str::FromStr for ErrorPolicy {
    type Err = Error;
    /// `exit`, `retry` or `skip` (with the default backoff).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exit" => Ok(ErrorPolicy::Exit),
            "retry" => Ok(ErrorPolicy::Retry(RetryPolicy::default())),
            "skip" => Ok(ErrorPolicy::Skip(RetryPolicy::default())),
            other => {
                Err(Error::config(format!("unknown error policy {other:?}: expected exit, retry or skip")))
            }
        }
    }
}

impl ErrorPolicy {
    /// The retry settings, when the policy retries.
    pub fn retry(&self) -> Option<&RetryPolicy> {
        match self {
            ErrorPolicy::Exit => None,
            ErrorPolicy::Retry(r) | ErrorPolicy::Skip(r) => Some(r),
        }
    }
}

/// Exponential backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts after the first failure before giving up.
    pub max_retries: u32,
    /// First delay.
    pub initial_backoff: Duration,
    /// Largest delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Retry for ever, from 200 ms doubling up to 30 s.
    pub fn forever() -> Self {
        RetryPolicy { max_retries: u32::MAX, ..RetryPolicy::default() }
    }

    /// The delay before retry number `attempt` (from 1): doubling, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(2), Duration::from_millis(200));
        assert_eq!(r.backoff(4), Duration::from_millis(800));
        assert_eq!(r.backoff(5), Duration::from_secs(1));
        assert_eq!(r.backoff(40), Duration::from_secs(1));
    }

    #[test]
    fn parses_names() {
        assert_eq!("exit".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::Exit);
        assert!(matches!("skip".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::Skip(_)));
        assert!("never".parse::<ErrorPolicy>().is_err());
    }
}
