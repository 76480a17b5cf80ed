//! The replicas of one backend: least-outstanding-requests selection, passive ejection after
//! consecutive failures, and the verdict of active health checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug)]
pub struct Replica<C> {
    pub url: String,
    pub client: C,
    outstanding: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds since `Replicas::epoch` until which the replica is ejected.
    ejected_until_ms: AtomicU64,
    /// The last active health check's verdict (true until a check says otherwise, so that
    /// requests are tried before the first check answers).
    healthy: AtomicBool,
    /// Whether an active check has given a verdict yet (always, when there are no checks):
    /// until then the backend does not count as ready.
    checked: AtomicBool,
}

/// What the active health checks know of a replica, carried over to a reloaded configuration's
/// replica of the same URL so that a reload does not reset readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    healthy: bool,
    checked: bool,
}

#[derive(Debug)]
pub struct Replicas<C> {
    list: Vec<Arc<Replica<C>>>,
    eject_after_failures: u32,
    eject_for: Duration,
    epoch: Instant,
    /// Where the next pick starts looking, so that ties rotate over the replicas.
    next: AtomicUsize,
}

/// A replica in use by one request; dropping it ends the request's claim.
#[derive(Debug)]
pub struct Lease<'r, C> {
    replicas: &'r Replicas<C>,
    pub replica: &'r Arc<Replica<C>>,
}

impl<C> Replicas<C> {
    /// `checked`: whether the replicas start with a verdict, that is, no active checks will
    /// give one.
    pub fn new(
        backends: impl IntoIterator<Item = (String, C)>,
        eject_after_failures: u32,
        eject_for: Duration,
        checked: bool,
    ) -> Self {
        let list = backends
            .into_iter()
            .map(|(url, client)| {
                Arc::new(Replica {
                    url,
                    client,
                    outstanding: AtomicUsize::new(0),
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                    healthy: AtomicBool::new(true),
                    checked: AtomicBool::new(checked),
                })
            })
            .collect();
        Self {
            list,
            eject_after_failures: eject_after_failures.max(1),
            eject_for,
            epoch: Instant::now(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn all(&self) -> &[Arc<Replica<C>>] {
        &self.list
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn available(&self, replica: &Replica<C>, now_ms: u64) -> bool {
        replica.healthy.load(Ordering::Relaxed)
            && replica.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    /// True when at least one replica has passed a health check (if there are checks) and may
    /// take requests.
    pub fn is_ready(&self) -> bool {
        let now = self.now_ms();
        self.list
            .iter()
            .any(|r| r.checked.load(Ordering::Relaxed) && self.available(r, now))
    }

    /// Each replica's URL and what the health checks know of it.
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, Verdict)> {
        self.list.iter().map(|r| {
            let verdict = Verdict {
                healthy: r.healthy.load(Ordering::Relaxed),
                checked: r.checked.load(Ordering::Relaxed),
            };
            (r.url.as_str(), verdict)
        })
    }

    /// Takes over the verdicts of replicas with the same URL in an earlier configuration.
    pub fn adopt(&self, earlier: &HashMap<String, Verdict>) {
        for replica in &self.list {
            if let Some(verdict) = earlier.get(&replica.url)
                && verdict.checked
            {
                replica.healthy.store(verdict.healthy, Ordering::Relaxed);
                replica.checked.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The available replica with the fewest requests in flight; among equals, the one with
    /// the fewest recent failures (so a retry avoids the replica that just failed), then the
    /// next in turn.
    pub fn pick(&self) -> Result<Lease<'_, C>> {
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let len = self.list.len().max(1);
        let replica = (0..self.list.len())
            .map(|offset| &self.list[(start + offset) % len])
            .filter(|r| self.available(r, now))
            .min_by_key(|r| {
                (
                    r.outstanding.load(Ordering::Relaxed),
                    r.failures.load(Ordering::Relaxed),
                )
            })
            .ok_or_else(|| {
                Error::upstream(
                    ErrorKind::Unavailable,
                    format!("no healthy backend replica (tried {})", self.urls()),
                )
            })?;
        replica.outstanding.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            replicas: self,
            replica,
        })
    }

    fn urls(&self) -> String {
        let urls: Vec<&str> = self.list.iter().map(|r| r.url.as_str()).collect();
        urls.join(", ")
    }

    pub fn set_healthy(&self, replica: &Replica<C>, healthy: bool) {
        replica.healthy.store(healthy, Ordering::Relaxed);
        replica.checked.store(true, Ordering::Relaxed);
        if healthy {
            replica.failures.store(0, Ordering::Relaxed);
            replica.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

impl<C> Lease<'_, C> {
    pub fn succeeded(&self) {
        self.replica.failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failure to reach the replica; enough in a row eject it for a while.
    pub fn failed(&self) {
        let failures = self.replica.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.replicas.eject_after_failures {
            let until = self.replicas.now_ms()
                + u64::try_from(self.replicas.eject_for.as_millis()).unwrap_or(u64::MAX / 2);
            self.replica
                .ejected_until_ms
                .store(until, Ordering::Relaxed);
            self.replica.failures.store(0, Ordering::Relaxed);
        }
    }
}

impl<C> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        self.replica.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize) -> Replicas<()> {
        Replicas::new(
            (0..n).map(|i| (format!("http://r{i}"), ())),
            2,
            Duration::from_secs(60),
            true,
        )
    }

    #[test]
    fn replicas_are_not_ready_before_a_check_answers_and_reloads_keep_the_verdict() {
        let probed = Replicas::new(
            [("http://a".to_owned(), ())],
            2,
            Duration::from_secs(60),
            false,
        );
        assert!(!probed.is_ready(), "no verdict yet");
        assert!(probed.pick().is_ok(), "requests are still tried");
        probed.set_healthy(&probed.all()[0], true);
        assert!(probed.is_ready());
        let earlier: HashMap<String, Verdict> = probed
            .verdicts()
            .map(|(url, verdict)| (url.to_owned(), verdict))
            .collect();
        let reloaded = Replicas::new(
            [("http://a".to_owned(), ()), ("http://b".to_owned(), ())],
            2,
            Duration::from_secs(60),
            false,
        );
        reloaded.adopt(&earlier);
        assert!(reloaded.is_ready(), "http://a keeps its verdict");
        reloaded.set_healthy(&reloaded.all()[0], false);
        assert!(!reloaded.is_ready(), "http://b has none yet");
    }

    #[test]
    fn picks_the_least_outstanding_replica() -> Result<()> {
        let set = replicas(3);
        let a = set.pick()?;
        let b = set.pick()?;
        let c = set.pick()?;
        let mut urls = vec![
            a.replica.url.clone(),
            b.replica.url.clone(),
            c.replica.url.clone(),
        ];
        let freed = b.replica.url.clone();
        urls.sort();
        assert_eq!(urls, ["http://r0", "http://r1", "http://r2"]);
        drop(b);
        assert_eq!(set.pick()?.replica.url, freed);
        Ok(())
    }

    #[test]
    fn ejects_after_consecutive_failures_and_health_restores() -> Result<()> {
        let set = replicas(1);
        set.pick()?.failed();
        assert!(set.is_ready(), "one failure is below the threshold");
        set.pick()?.failed();
        assert!(!set.is_ready());
        let error = set.pick().err().map(|e| e.kind());
        assert_eq!(error, Some(ErrorKind::Unavailable));
        set.set_healthy(&set.all()[0], true);
        assert!(set.is_ready());
        Ok(())
    }

    #[test]
    fn a_success_resets_the_failure_count() -> Result<()> {
        let set = replicas(1);
        set.pick()?.failed();
        set.pick()?.succeeded();
        set.pick()?.failed();
        assert!(set.is_ready());
        Ok(())
    }

    #[test]
    fn a_retry_avoids_the_replica_that_just_failed() -> Result<()> {
        let set = replicas(2);
        for _ in 0..4 {
            let first = set.pick()?;
            let failed = first.replica.url.clone();
            first.failed();
            drop(first);
            assert_ne!(set.pick()?.replica.url, failed);
            set.set_healthy(&set.all()[0], true);
            set.set_healthy(&set.all()[1], true);
        }
        Ok(())
    }

    #[test]
    fn ties_rotate_over_the_replicas() -> Result<()> {
        let set = replicas(3);
        let mut seen: Vec<String> = (0..3)
            .map(|_| set.pick().map(|l| l.replica.url.clone()))
            .collect::<Result<_>>()?;
        seen.sort();
        assert_eq!(seen, ["http://r0", "http://r1", "http://r2"]);
        Ok(())
    }

    #[test]
    fn unhealthy_replicas_are_skipped() -> Result<()> {
        let set = replicas(2);
        set.set_healthy(&set.all()[0], false);
        for _ in 0..3 {
            assert_eq!(set.pick()?.replica.url, "http://r1");
        }
        Ok(())
    }
}
