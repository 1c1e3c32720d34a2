//! The towers' optimiser settings: AdamW with linear warmup and cosine decay, as transformers'
//! `get_cosine_schedule_with_warmup`.

use serde::{Deserialize, Serialize};

/// How long and how fast a tower trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
}

impl TrainSpec {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.steps.saturating_sub(self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// Losses seen while training, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    pub losses: Vec<f32>,
    pub seconds: f64,
    /// Held-out measurements after training, by name.
    pub metrics: Vec<(String, f32)>,
}

impl TrainLog {
    /// Mean of the first and of the last `n` losses.
    pub fn first_last(&self, n: usize) -> (f32, f32) {
        let n = n.min(self.losses.len()).max(1);
        let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len().max(1) as f32;
        (
            mean(&self.losses[..n.min(self.losses.len())]),
            mean(&self.losses[self.losses.len().saturating_sub(n)..]),
        )
    }
}
