//! Training for anchorage: the recipe schema, the derived training plan, and (as they land) the
//! trainer, checkpoints, logging and export that the `train` binary drives.

pub mod build;
pub mod checkpoint;
mod error;
pub mod flops;
pub mod grad_norm;
pub mod hub;
pub mod metrics;
pub mod plan;
pub mod recipe;
pub mod schedule;
pub mod trainer;

pub use error::TrainError;
pub use hub::{resolve_hub_model, HubAccess, HubError};
pub use plan::{Plan, Stage};
pub use recipe::Recipe;
