//! What a checkpoint records beside the weights: enough to continue exactly.

use std::collections::BTreeMap;

use anchorage_data::FaultReason;
use serde::{Deserialize, Serialize};

/// `state.json` of a step checkpoint. Every number in it reads back: a non-finite loss is written
/// as `"NaN"`/`"inf"` (`json_float.rs`), never as serde_json's `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Epoch of the next step, and the position of its first sample in that epoch's order.
    pub epoch: u32,
    pub position: u64,
    /// The seed the data order and initial weights come from (the order has no other RNG state).
    pub seed: u64,
    /// Skipped samples so far, by reason (occurrences).
    pub skipped: BTreeMap<FaultReason, u64>,
    /// Loss of every step so far, for comparisons across resumes.
    #[serde(with = "crate::json_float::vec")]
    pub losses: Vec<f64>,
    /// Wall time of the steps so far (after their samples arrived), across resumes.
    #[serde(default)]
    pub seconds: f64,
    /// Optimizer steps skipped so far because the loss or gradient norm was not finite, and how
    /// many of the last steps in a row were.
    #[serde(default)]
    pub nonfinite_steps: u64,
    #[serde(default)]
    pub nonfinite_in_a_row: u64,
    /// Samples that reached a forward pass so far; `None` in checkpoints written before it was
    /// counted.
    #[serde(default)]
    pub samples_trained: Option<u64>,
    /// ZeRO-1: the optimizer state is split over this many ranks (`optim-rank-{r}.bin`, one per
    /// global rank); absent when one `optimizer.bin` holds all of it. A sharded checkpoint
    /// resumes only on the same number of ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_world_size: Option<u64>,
}
