//! The adaptive delay (`max_queue_delay_ms: auto`).
//!
//! The batcher measures two things: the backend's latency per batch, fitted as
//! `latency(n) = fixed + per_row · n` by exponentially weighted least squares over its recent
//! batches, and the rate at which rows arrive (an exponentially weighted mean of the gaps).
//! With `k` batches allowed in flight, batches of `n` rows keep up with arrivals at `λ` rows/s
//! when `k · n / latency(n) ≥ λ`, that is from
//!
//! ```text
//! n_min = λ · fixed / (k − λ · per_row)      (every size is too small when λ · per_row ≥ k)
//! ```
//!
//! A batch smaller than `n_min` leaves requests piling up behind it, so waiting for more rows
//! pays; a batch of `n_min` or more does not get faster by growing, so waiting only adds latency.
//! At low load `n_min` is below one row and nothing waits at all; as load grows, batches grow
//! just enough for the backend to keep up.
//!
//! The arrival rate alone misleads with callers in a closed loop (each sends again once
//! answered: benchmark clients, pipeline stages, a fixed pool of workers). Their rate is set by
//! the batch size itself, `λ = k · n / latency(n)`, so whatever size the batcher starts with
//! passes as the keep-up size, and batches stay as small as they began (measured: 11 rows with
//! 32 callers, a third of the throughput the backend had to give). Two more rules cover it:
//!
//! - **Rows owed.** Once the load needs batches of more than one row (`n_min > 1`; under
//!   lighter load nothing waits, whether callers come back or not), the rows of answered batches
//!   are owed back until as many rows have arrived, and a batch at the backend that will answer
//!   soon brings its rows back too. While any rows are coming back, a batch waits even at
//!   `n_min`: the callers answered are about to send again.
//! - **Rows worth waiting for.** Waiting `w` for `m` more rows lowers the backend's cost per row
//!   exactly while `w < m · fixed / n` (the per-row costs cancel out; the wait counts as backend
//!   time, exact for a backend that runs one batch at a time). A batch of `n` waits for
//!   the rows coming back, or for one more row, only that long after the last arrival, answer or
//!   expected answer: past that they have stopped coming (an open-loop caller that left, or a
//!   caller that is not coming back), and a batch sent then forgets what was owed.
//!
//! In every case the batch is sent when it holds `max_batch_size` rows, or when the oldest
//! request's age plus the predicted latency of the batch would pass `target_latency`. Until
//! the backend has answered batches of two different sizes there is no fit, and batches are
//! sent without waiting (they still grow while every in-flight slot is busy).
//! `simulated_load` checks these rules in virtual time against closed and open loops.

use std::time::{Duration, Instant};

use super::policy::Policy;

/// Weight kept by old measurements at each new one (about the last 50 batches count).
const LATENCY_DECAY: f64 = 0.98;
/// Weight of a new gap in the arrival-rate mean.
const ARRIVAL_WEIGHT: f64 = 0.05;

/// Backend latency as a linear function of batch rows, fitted from measurements.
#[derive(Debug, Clone, Default)]
pub struct LatencyModel {
    weight: f64,
    rows: f64,
    rows_sq: f64,
    latency: f64,
    rows_latency: f64,
    /// The smallest and largest batch measured: a slope needs two distinct sizes.
    sizes: Option<(usize, usize)>,
}

/// `(fixed, per_row)` costs in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub fixed: f64,
    pub per_row: f64,
}

impl Fit {
    pub fn latency(&self, rows: usize) -> Duration {
        Duration::from_secs_f64((self.fixed + self.per_row * rows as f64).max(0.0))
    }
}

impl LatencyModel {
    pub fn record(&mut self, rows: usize, latency: Duration) {
        let (n, l) = (rows as f64, latency.as_secs_f64());
        self.weight = self.weight * LATENCY_DECAY + 1.0;
        self.rows = self.rows * LATENCY_DECAY + n;
        self.rows_sq = self.rows_sq * LATENCY_DECAY + n * n;
        self.latency = self.latency * LATENCY_DECAY + l;
        self.rows_latency = self.rows_latency * LATENCY_DECAY + n * l;
        self.sizes = Some(match self.sizes {
            Some((low, high)) => (low.min(rows), high.max(rows)),
            None => (rows, rows),
        });
    }

    /// The fitted costs, once batches of two sizes were measured.
    pub fn fit(&self) -> Option<Fit> {
        let (low, high) = self.sizes?;
        if low == high {
            return None;
        }
        let spread = self.weight * self.rows_sq - self.rows * self.rows;
        // Recent batches may all have one size even if older ones did not.
        let per_row = if spread > f64::EPSILON * self.weight * self.rows_sq {
            ((self.weight * self.rows_latency - self.rows * self.latency) / spread).max(0.0)
        } else {
            0.0
        };
        let fixed = ((self.latency - per_row * self.rows) / self.weight).max(0.0);
        Some(Fit { fixed, per_row })
    }
}

/// Rows per second arriving at a batcher.
#[derive(Debug, Clone, Default)]
pub struct ArrivalRate {
    last: Option<Instant>,
    /// Mean seconds between rows.
    gap: Option<f64>,
}

impl ArrivalRate {
    pub fn record(&mut self, rows: usize, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).as_secs_f64() / rows.max(1) as f64;
            self.gap = Some(match self.gap {
                Some(mean) => mean + ARRIVAL_WEIGHT * (gap - mean),
                None => gap,
            });
        }
        self.last = Some(now);
    }

    /// When the last row arrived.
    pub fn last(&self) -> Option<Instant> {
        self.last
    }

    pub fn rows_per_second(&self) -> Option<f64> {
        self.gap.filter(|gap| *gap > 0.0).map(|gap| 1.0 / gap)
    }
}

/// The smallest batch that keeps up with `rate` rows/s on `inflight` concurrent batches, capped
/// at `max` (the cap also stands for "no size keeps up").
pub fn keep_up_rows(fit: Fit, rate: f64, inflight: usize, max: usize) -> usize {
    let capacity = inflight as f64 - rate * fit.per_row;
    if capacity <= 0.0 {
        return max;
    }
    let rows = (rate * fit.fixed / capacity).ceil();
    if rows >= max as f64 {
        max
    } else {
        (rows as usize).max(1)
    }
}

/// How long a batch of `rows` may wait for `more` rows (at least one). Sending `n` rows costs
/// the backend `fixed + per_row · n`; waiting `w` for `m` more lowers the cost per row exactly
/// while `w < m · fixed / n` (the per-row costs cancel out).
pub fn worth_waiting(fit: Fit, rows: usize, more: usize) -> Duration {
    let seconds = fit.fixed * more.max(1) as f64 / rows.max(1) as f64;
    // Capped so that a deadline built from it stays a representable `Instant`.
    Duration::try_from_secs_f64(seconds).map_or(Policy::MAX_WAIT, |w| w.min(Policy::MAX_WAIT))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ms(value: f64) -> Duration {
        Duration::from_secs_f64(value / 1000.0)
    }

    #[test]
    fn fits_fixed_and_per_row_costs() {
        let mut model = LatencyModel::default();
        assert!(model.fit().is_none());
        for rows in [1, 4, 8, 16, 32, 2, 24] {
            model.record(rows, ms(2.0 + 0.05 * rows as f64));
        }
        let fit = model.fit().unwrap();
        assert!((fit.fixed - 0.002).abs() < 1e-6, "{fit:?}");
        assert!((fit.per_row - 0.000_05).abs() < 1e-8, "{fit:?}");
        assert_eq!(fit.latency(10), ms(2.5));
    }

    #[test]
    fn one_size_gives_no_fit() {
        let mut model = LatencyModel::default();
        model.record(8, ms(3.0));
        model.record(8, ms(3.2));
        assert!(model.fit().is_none());
    }

    #[test]
    fn arrival_rate_follows_gaps() {
        let mut rate = ArrivalRate::default();
        let start = Instant::now();
        assert!(rate.rows_per_second().is_none());
        for i in 0..10 {
            rate.record(2, start + ms(f64::from(i)));
        }
        // 2 rows every millisecond.
        assert!((rate.rows_per_second().unwrap() - 2000.0).abs() < 1.0);
    }

    #[test]
    fn keep_up_rows_grow_with_load() {
        let fit = Fit {
            fixed: 0.002,
            per_row: 0.000_02,
        };
        // 100 rows/s: a batch of one row keeps up easily.
        assert_eq!(keep_up_rows(fit, 100.0, 1, 32), 1);
        // 5000 rows/s on one slot: 5000·0.002 / (1 − 0.1) = 11.1 → 12 rows.
        assert_eq!(keep_up_rows(fit, 5000.0, 1, 32), 12);
        // Two slots halve the need, roughly.
        assert_eq!(keep_up_rows(fit, 5000.0, 2, 32), 6);
        // Past the backend's capacity only the largest batch will do.
        assert_eq!(keep_up_rows(fit, 60_000.0, 1, 32), 32);
    }

    #[test]
    fn waiting_pays_while_it_costs_less_than_the_rows_it_brings_share() {
        let fit = Fit {
            fixed: 0.002,
            per_row: 0.000_02,
        };
        // Two more rows for a batch of four: 2 × 2 ms / 4.
        assert_eq!(worth_waiting(fit, 4, 2), ms(1.0));
        // Nothing known to be coming: one more row.
        assert_eq!(worth_waiting(fit, 4, 0), ms(0.5));
        let slow = Fit {
            fixed: 1e12,
            per_row: 0.0,
        };
        assert_eq!(worth_waiting(slow, 1, usize::MAX), Policy::MAX_WAIT);
    }
}
