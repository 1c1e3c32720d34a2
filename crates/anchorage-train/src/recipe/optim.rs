use serde::{Deserialize, Serialize};

/// `[optim]`: AdamW, the learning-rate schedule, clipping and batch sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate.
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    #[serde(default = "eps")]
    pub eps: f64,
    /// Warmup steps = ceil(warmup_ratio × total steps), as transformers computes them.
    #[serde(default = "warmup")]
    pub warmup_ratio: f64,
    #[serde(default = "schedule")]
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    #[serde(default = "clip")]
    pub grad_clip: f64,
    /// Samples per optimizer step over all devices and accumulation steps.
    pub global_batch: u64,
    /// Samples per forward/backward on one device.
    pub micro_batch: u64,
    /// Passes over the data (default 1 when `max_steps` is not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u32>,
    /// Stop after this many optimizer steps (overrides `epochs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    #[serde(default = "loss_mean")]
    pub loss_mean: LossMean,
    /// Optimizer steps in a row whose loss or gradient norm may be NaN or infinite before the run
    /// stops as diverged. Such a step is skipped (no update) and counted.
    #[serde(default = "max_nonfinite_steps")]
    pub max_nonfinite_steps: u64,
    /// ZeRO stage: 0 keeps the whole AdamW state on every data-parallel rank; 1 shards it by
    /// parameter across the ranks (each rank steps the parameters it owns, then the new values
    /// are shared), so a rank holds about 1 / world of it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zero_stage: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Learning-rate schedule after warmup (transformers' formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half-cosine decay to 0 (`get_cosine_schedule_with_warmup`).
    Cosine,
    /// Linear decay to 0.
    Linear,
    Constant,
}

/// How the loss mean over supervised tokens is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossMean {
    /// LLaVA/HF: token mean within each micro-batch, then the mean over micro-batches and devices.
    MicroBatch,
    /// Token mean over the whole global batch (every supervised token weighs the same).
    GlobalBatch,
}

fn betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn eps() -> f64 {
    1e-8
}
fn warmup() -> f64 {
    0.03
}
fn schedule() -> Schedule {
    Schedule::Cosine
}
fn clip() -> f64 {
    1.0
}
fn max_nonfinite_steps() -> u64 {
    8
}
fn loss_mean() -> LossMean {
    LossMean::MicroBatch
}
