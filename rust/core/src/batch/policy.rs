//! How a batcher forms batches: its size, delay and queue settings.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long a batcher may hold requests back to form a bigger batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// Wait at most this long after the oldest request arrived (zero: never wait).
    Fixed(Duration),
    /// Learn the wait from the backend's measured latency, keeping the oldest request's
    /// predicted latency within `target_latency` (see [`super::adaptive`]).
    Auto { target_latency: Duration },
}

/// The settings of one batcher. Sizes count rows (dimension 0), the queue counts requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_batch_size: usize,
    pub delay: Delay,
    /// Batch sizes sent as soon as they can be formed, ascending, none above `max_batch_size`.
    pub preferred_batch_sizes: Vec<usize>,
    /// Requests that may wait; more are refused.
    pub max_queue_size: usize,
    /// Longest wait in the queue before a request fails with a timeout.
    pub queue_timeout: Duration,
    /// Batches that may be at the backend at once; the next one forms while they run.
    pub max_inflight_batches: usize,
}

impl Policy {
    /// The longest delay, latency target or queue timeout (about 11.6 days): deadlines are
    /// `Instant`s, which cannot be pushed arbitrarily far.
    pub const MAX_WAIT: Duration = Duration::from_secs(1_000_000);

    /// Checks the settings against each other, sorting the preferred sizes.
    pub fn validated(mut self) -> Result<Self> {
        let delay = match self.delay {
            Delay::Fixed(delay) => delay,
            Delay::Auto { target_latency } => target_latency,
        };
        if delay.max(self.queue_timeout) > Self::MAX_WAIT {
            return Err(Error::bad_request(format!(
                "queue delays, latency targets and queue timeouts must be at most {} ms",
                Self::MAX_WAIT.as_millis()
            )));
        }
        if self.max_batch_size == 0 || self.max_queue_size == 0 || self.max_inflight_batches == 0 {
            return Err(Error::bad_request(
                "max_batch_size, max_queue_size and max_inflight_batches must be at least 1",
            ));
        }
        self.preferred_batch_sizes.sort_unstable();
        self.preferred_batch_sizes.dedup();
        if let Some(&size) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&size| size == 0 || size > self.max_batch_size)
        {
            return Err(Error::bad_request(format!(
                "preferred batch size {size} must be between 1 and max_batch_size ({})",
                self.max_batch_size
            )));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delay: Delay, queue_timeout: Duration) -> Policy {
        Policy {
            max_batch_size: 8,
            delay,
            preferred_batch_sizes: vec![8, 2, 2],
            max_queue_size: 16,
            queue_timeout,
            max_inflight_batches: 1,
        }
    }

    #[test]
    fn waits_beyond_the_maximum_are_refused_not_overflowed() {
        let second = Duration::from_secs(1);
        let ok = policy(Delay::Fixed(second), Policy::MAX_WAIT).validated();
        assert_eq!(ok.map(|p| p.preferred_batch_sizes), Ok(vec![2, 8]));
        let huge = Duration::from_secs(u64::MAX);
        for bad in [
            policy(Delay::Fixed(huge), second),
            policy(
                Delay::Auto {
                    target_latency: huge,
                },
                second,
            ),
            policy(Delay::Fixed(second), huge),
        ] {
            assert!(bad.validated().is_err());
        }
    }
}
