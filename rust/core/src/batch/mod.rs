//! Batching: merging compatible requests along dimension 0, sending them to the backend as one,
//! and splitting the answer back.
//!
//! - [`rows`]: tensors merged and split by row counts (zero-copy splits).
//! - [`policy`] and [`queue`]: the settings and the rule that forms batches, for any member.
//! - [`adaptive`]: the learned delay of `max_queue_delay_ms: auto`.
//! - [`merge`]: which requests may share a batch; the batch request and its answer split back.
//! - [`Batcher`]: the gateway's per-model batcher, running batches on a route's backend.

pub mod adaptive;
mod batcher;
pub mod merge;
pub mod policy;
pub mod queue;
mod rows;
#[cfg(test)]
mod simulated_load;

pub use batcher::{Batcher, BatcherStats, Batchers, Reply, Sender};
pub use policy::{Delay, Policy};
pub use queue::{Decision, Full, Member, Queue};
pub use rows::{concat, split};
