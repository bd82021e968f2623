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

/// Exponential backoff. Non-exhaustive: start from [`RetryPolicy::default`]
/// or [`RetryPolicy::forever`] and change it with the `with_` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

    /// Set [`max_retries`](Self::max_retries).
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Set [`initial_backoff`](Self::initial_backoff).
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Set [`max_backoff`](Self::max_backoff).
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// The delay before retry number `attempt` (from 1): doubling, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Run `attempt` until it succeeds or fails with an error that is not
/// [transient](crate::ErrorKind::is_transient), waiting `policy`'s backoff
/// between attempts and logging each failure (a server being restarted,
/// refusing connections, or in crash recovery is waited for). Gives up after
/// `policy.max_retries` retries with the last error.
pub async fn retry_transient<T, F, Fut>(policy: &RetryPolicy, what: &str, mut attempt: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    let mut n = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind().is_transient() && n < policy.max_retries => {
                n += 1;
                let delay = policy.backoff(n);
                tracing::warn!(error = %e, attempt = n, ?delay, "{what} failed with a transient error; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
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

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let policy = RetryPolicy { initial_backoff: Duration::from_millis(1), ..RetryPolicy::forever() };
        let mut calls = 0;
        let v = retry_transient(&policy, "connect", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 4 {
                    Err(Error::new(crate::ErrorKind::SinkConnection, "refused"))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 4);
        let mut calls = 0;
        let e = retry_transient(&policy, "connect", || {
            calls += 1;
            async { Err::<(), _>(Error::new(crate::ErrorKind::Config, "bad password")) }
        })
        .await
        .unwrap_err();
        assert_eq!((e.kind(), calls), (crate::ErrorKind::Config, 1));
        let limited = RetryPolicy { max_retries: 2, ..policy };
        let mut calls = 0;
        let e = retry_transient(&limited, "connect", || {
            calls += 1;
            async { Err::<(), _>(Error::new(crate::ErrorKind::SourceConnection, "down")) }
        })
        .await
        .unwrap_err();
        assert_eq!((e.kind(), calls), (crate::ErrorKind::SourceConnection, 3));
    }

    #[test]
    fn parses_names() {
        assert_eq!("exit".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::Exit);
        assert!(matches!("skip".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::Skip(_)));
        assert!("never".parse::<ErrorPolicy>().is_err());
    }
}
