//! What a checkpoint records beside the weights: enough to continue exactly.

use std::collections::BTreeMap;

use anchorage_data::FaultReason;
use serde::{Deserialize, Serialize};

/// `state.json` of a step checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub losses: Vec<f64>,
    /// Wall time of the steps so far (after their samples arrived), across resumes.
    #[serde(default)]
    pub seconds: f64,
}
