//! Text → tokens → shards → batches.

pub mod batches;
pub mod shards;
pub mod tokenizer;

pub use batches::{Batcher, BatcherState, TokenData};
pub use shards::{prepare, PrepareOptions, PrepareReport, TokenShard};
