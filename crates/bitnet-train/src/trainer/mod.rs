//! The training loop and what it needs: optimizer, schedule, checkpoints, metrics, sampling.

pub mod checkpoint;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod par;
pub mod plot;
pub mod sample;
pub mod schedule;
pub mod train;

pub use optim::AdamW;
pub use schedule::{Schedule, ScheduleKind};
pub use train::{train, TrainOptions, TrainSummary};
