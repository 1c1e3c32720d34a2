//! Training for anchorage: the recipe schema, the derived plan and resolved settings, and the
//! trainer (loop, data parallel, checkpoints, logging, exports) that the `train` binary drives.
//! It depends on the composed model (anchorage-model) and the data (anchorage-data) only.

pub mod checkpoint;
mod error;
pub mod flops;
pub mod grad_norm;
mod json_float;
pub mod metrics;
pub mod plan;
pub mod recipe;
pub mod run_lock;
pub mod schedule;
mod settings;
pub mod tensorboard;
pub mod trainer;

pub use error::TrainError;
pub use plan::{Plan, Stage};
pub use recipe::Recipe;
pub use settings::{connector_meta, Settings};
