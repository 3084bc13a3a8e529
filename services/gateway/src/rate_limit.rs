//! The per-user rate limit: one token bucket (GCRA, `governor`) per token subject, so one busy
//! user (or a runaway script) cannot starve the others.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock as _};

use crate::config::RateLimitSettings;

/// How often buckets that are full again are forgotten, so memory follows active users only.
const FORGET_INTERVAL: Duration = Duration::from_secs(60);

/// Calls allowed per user. Cheap to clone.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    settings: RateLimitSettings,
}

/// A refused call: the user is over the limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "rate limit exceeded: at most {per_second} calls per second (bursts of {burst}) per user; \
     retry in {retry_after_ms} ms"
)]
pub struct Exceeded {
    /// Sustained calls per second allowed.
    pub per_second: u32,
    /// Burst allowed.
    pub burst: u32,
    /// When the next call would pass, from now.
    pub retry_after_ms: u128,
}

impl RateLimit {
    /// A limiter of `settings.requests_per_second`, with bursts of `settings.burst`.
    pub fn new(settings: &RateLimitSettings) -> Self {
        let per_second = NonZeroU32::new(settings.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            )),
            settings: settings.clone(),
        }
    }

    /// Takes one call from `subject`'s bucket, or says when the next one would pass.
    pub fn check(&self, subject: &str) -> Result<(), Exceeded> {
        // `check_key` takes `&K`; the allocation is small next to a proxied call.
        self.limiter
            .check_key(&subject.to_owned())
            .map_err(|not_until| Exceeded {
                per_second: self.settings.requests_per_second,
                burst: self.settings.burst,
                retry_after_ms: not_until
                    .wait_time_from(self.limiter.clock().now())
                    .as_millis(),
            })
    }

    /// Forgets the buckets of idle users every minute until `shutdown` is sent.
    pub fn spawn_housekeeping(
        &self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let limiter = Arc::clone(&self.limiter);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(FORGET_INTERVAL);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                    _ = shutdown.changed() => break,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_over_the_burst_is_refused_while_others_pass() {
        let limit = RateLimit::new(&RateLimitSettings {
            requests_per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            limit.check("ana").unwrap();
        }
        let exceeded = limit.check("ana").unwrap_err();
        assert!(exceeded.retry_after_ms > 0 && exceeded.retry_after_ms <= 1000);
        assert!(exceeded.to_string().contains("rate limit exceeded"));
        limit.check("bob").unwrap();
    }
}
