//! The batching rule under simulated load, in virtual time: callers in a closed loop (each sends
//! again as soon as it is answered, like a benchmark client or a pipeline stage) or rows arriving
//! at random at a mean rate (an open loop), in front of a backend whose call costs
//! `fixed + per_row · rows` and that runs one batch at a time or all of them at once. Seconds of
//! load take milliseconds here and do not wobble with the machine, so the adaptive delay's
//! behaviour is checked across loads that a real benchmark needs minutes for.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use super::policy::{Delay, Policy};
use super::queue::{Decision, Member, Queue};

const FIXED: Duration = Duration::from_micros(2100);
const PER_ROW: Duration = Duration::from_micros(20);
/// Between an answer and the caller's next request (client, network and gateway time), plus
/// `SPREAD` per caller number: the answers of one batch go out one after another.
const TURNAROUND: Duration = Duration::from_micros(300);
const SPREAD: Duration = Duration::from_micros(5);
const STAGGER: Duration = Duration::from_micros(1200);
const RUN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Load {
    Closed { callers: u32 },
    Open { rows_per_second: f64 },
}

#[derive(Debug)]
struct Outcome {
    mean_batch: f64,
    rows_per_second: f64,
    mean_latency: Duration,
    /// The share of rows sent later than they arrived.
    held: f64,
}

/// A one-row request from `caller`.
#[derive(Debug)]
struct Call {
    caller: u32,
    at: Instant,
}

impl Member for Call {
    type Key = ();
    fn key(&self) -> &() {
        &()
    }
    fn rows(&self) -> usize {
        1
    }
    fn enqueued(&self) -> Instant {
        self.at
    }
    fn is_gone(&self) -> bool {
        false
    }
}

/// Exponential gaps from a fixed-seed xorshift, so every run sees the same arrivals.
struct Gaps(u64);

impl Gaps {
    fn next(&mut self, rows_per_second: f64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let uniform = (self.0 >> 11) as f64 / (1_u64 << 53) as f64;
        Duration::from_secs_f64(-(1.0 - uniform).ln() / rows_per_second)
    }
}

/// A queue that knows the backend from earlier traffic, as in a long-running gateway.
fn trained(policy: Policy, at: Instant) -> Queue<Call> {
    let mut queue = Queue::new(policy);
    for rows in [1_u32, 8] {
        queue.record_batch(rows as usize, Some(FIXED + PER_ROW * rows), at);
    }
    queue
}

fn simulate(policy: Policy, load: Load, serial: bool) -> Outcome {
    let start = Instant::now();
    run(&mut trained(policy, start), start, load, serial)
}

/// `RUN` of `load` from `start`. Batches still at the backend at the end are never answered,
/// like those of clients that leave.
fn run(queue: &mut Queue<Call>, start: Instant, load: Load, serial: bool) -> Outcome {
    let end = start + RUN;
    let slots = queue.policy().max_inflight_batches;
    let mut gaps = Gaps(0x9E37_79B9_7F4A_7C15);
    let turnaround = |caller: u32| TURNAROUND + SPREAD * caller;
    // The next request of each caller (a closed loop), or the next arrival (an open loop).
    let mut sends: Vec<Option<Instant>> = match load {
        // Two groups, the second a millisecond late: batches must not stay split in halves.
        Load::Closed { callers } => (0..callers)
            .map(|c| Some(start + turnaround(c) + STAGGER * (c % 2)))
            .collect(),
        Load::Open { rows_per_second } => vec![Some(start + gaps.next(rows_per_second))],
    };
    let mut running: Vec<(Instant, Instant, Vec<Call>)> = Vec::new();
    let (mut backend_free, mut wake) = (start, None);
    let (mut calls, mut rows, mut waited, mut held) = (0_u32, 0_u32, Duration::ZERO, 0_u32);
    loop {
        let now = sends
            .iter()
            .flatten()
            .chain(running.iter().map(|(answer, _, _)| answer))
            .chain(wake.iter())
            .min()
            .copied()
            .unwrap();
        if now > end {
            break;
        }
        let (answered, still): (Vec<_>, Vec<_>) =
            running.drain(..).partition(|(answer, _, _)| *answer <= now);
        running = still;
        for (answer, sent, batch) in answered {
            queue.record_batch(batch.len(), Some(answer - sent), answer);
            // Calls queued before `start` belong to callers that left.
            for call in batch.into_iter().filter(|call| call.at >= start) {
                rows += 1;
                waited += answer - call.at;
                if let Load::Closed { .. } = load {
                    sends[call.caller as usize] = Some(answer + turnaround(call.caller));
                }
            }
        }
        for (caller, send) in sends.iter_mut().enumerate() {
            if send.is_some_and(|at| at <= now) {
                *send = match load {
                    Load::Closed { .. } => None,
                    Load::Open { rows_per_second } => Some(now + gaps.next(rows_per_second)),
                };
                let call = Call {
                    caller: caller as u32,
                    at: now,
                };
                assert!(queue.push(call, now).is_ok());
            }
        }
        wake = None;
        while running.len() < slots {
            match queue.next(now) {
                Decision::Dispatch(batch) => {
                    held += batch.iter().filter(|call| call.at < now).count() as u32;
                    let begin = if serial { backend_free.max(now) } else { now };
                    backend_free = begin + FIXED + PER_ROW * batch.len() as u32;
                    calls += 1;
                    running.push((backend_free, now, batch));
                }
                Decision::WaitUntil(at) => {
                    wake = Some(at);
                    break;
                }
                Decision::Idle => break,
            }
        }
    }
    Outcome {
        mean_batch: f64::from(rows) / f64::from(calls),
        rows_per_second: f64::from(rows) / RUN.as_secs_f64(),
        mean_latency: waited / rows,
        held: f64::from(held) / f64::from(rows),
    }
}

fn auto(max_inflight_batches: usize) -> Policy {
    Policy {
        max_batch_size: 32,
        delay: Delay::Auto {
            target_latency: Duration::from_millis(50),
        },
        preferred_batch_sizes: Vec::new(),
        max_queue_size: 4096,
        queue_timeout: Duration::from_secs(5),
        max_inflight_batches,
    }
}

fn no_delay() -> Policy {
    Policy {
        delay: Delay::Fixed(Duration::ZERO),
        ..auto(2)
    }
}

#[test]
fn closed_loop_batches_hold_every_caller_that_is_waiting() {
    // Callers answered together send again together; the batch waits for all of them rather
    // than settling on whatever size the arrival rate it caused suggests.
    for serial in [true, false] {
        for slots in [1, 2] {
            for (callers, least) in [(8, 7.5), (32, 30.0)] {
                let outcome = simulate(auto(slots), Load::Closed { callers }, serial);
                assert!(
                    outcome.mean_batch >= least,
                    "{callers} callers, {slots} slots, serial {serial}: {outcome:?}"
                );
            }
        }
    }
}

#[test]
fn closed_loop_auto_beats_no_delay_on_a_serial_backend() {
    for callers in [8, 32] {
        let load = Load::Closed { callers };
        let waiting = simulate(auto(2), load, true);
        let eager = simulate(no_delay(), load, true);
        assert!(
            waiting.rows_per_second > 1.5 * eager.rows_per_second,
            "{callers} callers: {waiting:?} against {eager:?}"
        );
    }
}

#[test]
fn a_lone_caller_never_waits() {
    let outcome = simulate(auto(2), Load::Closed { callers: 1 }, true);
    assert_eq!(outcome.mean_batch, 1.0);
    assert!(
        outcome.mean_latency < FIXED + PER_ROW + Duration::from_micros(1),
        "{outcome:?}"
    );
}

#[test]
fn a_lone_caller_after_heavy_load_soon_stops_waiting() {
    let start = Instant::now();
    let mut queue = trained(auto(2), start);
    let heavy = run(&mut queue, start, Load::Closed { callers: 128 }, true);
    assert!(heavy.mean_batch > 31.0, "{heavy:?}");
    // The 128 callers leave with batches unanswered; one caller stays.
    let lone = run(
        &mut queue,
        start + RUN * 2,
        Load::Closed { callers: 1 },
        true,
    );
    assert!(lone.mean_latency < (FIXED + PER_ROW) * 11 / 10, "{lone:?}");
}

#[test]
fn open_loop_waits_only_when_load_needs_bigger_batches() {
    // 100 rows/s: a one-row batch (2.12 ms) keeps up easily, so nothing is held back (a few
    // rows find both slots busy).
    for serial in [true, false] {
        let light = simulate(
            auto(2),
            Load::Open {
                rows_per_second: 100.0,
            },
            serial,
        );
        assert!(light.mean_batch < 1.1, "{light:?}");
        assert!(light.held < 0.05, "serial {serial}: {light:?}");
    }
    // 5000 rows/s: ten times what one-row batches serve; batches grow, every row is served and
    // the latency target holds.
    let heavy = simulate(
        auto(2),
        Load::Open {
            rows_per_second: 5000.0,
        },
        true,
    );
    assert!(heavy.mean_batch > 10.0, "{heavy:?}");
    assert!(heavy.rows_per_second > 4800.0, "{heavy:?}");
    assert!(heavy.mean_latency < Duration::from_millis(50), "{heavy:?}");
}
