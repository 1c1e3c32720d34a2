//! The towers' optimiser settings: AdamW with linear warmup and cosine decay, as transformers'
//! `get_cosine_schedule_with_warmup`.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::DemoError;

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

/// Trains `module` for `t.steps` AdamW steps (weight decay, global-norm clipping at 1.0, the
/// warmup + cosine schedule) on `loss_at(step, module)`, logging every 50 steps as `what`. The log
/// holds each step's loss and the wall time; the caller adds its held-out metrics.
pub fn train_steps<B: AutodiffBackend, M: AutodiffModule<B>>(
    mut module: M,
    t: &TrainSpec,
    what: &'static str,
    mut loss_at: impl FnMut(usize, &M) -> Result<Tensor<B, 1>, DemoError>,
) -> Result<(M, TrainLog), DemoError> {
    let mut optim = AdamWConfig::new()
        .with_weight_decay(t.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init::<B, M>();
    let start = Instant::now();
    let mut log = TrainLog::default();
    for step in 0..t.steps {
        let loss = loss_at(step, &module)?;
        let value: f32 = loss.clone().into_scalar().elem();
        log.losses.push(value);
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(t.lr_at(step), module, grads);
        if step % 50 == 0 || step + 1 == t.steps {
            tracing::info!(step, loss = value, "{what}");
        }
    }
    log.seconds = start.elapsed().as_secs_f64();
    Ok((module, log))
}
