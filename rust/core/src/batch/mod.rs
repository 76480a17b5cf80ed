//! Batching. The primitives here merge tensors along dimension 0 and split them back by row
//! counts; the batcher builds on them.

mod rows;

pub use rows::{concat, split};
