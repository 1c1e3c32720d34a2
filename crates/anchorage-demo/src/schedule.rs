//! The towers' optimiser settings: AdamW with linear warmup and cosine decay, as transformers'
//! `get_cosine_schedule_with_warmup`.

use std::ops::Range;
use std::sync::Mutex;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
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
    /// Each step's batch is split into this many contiguous slices, computed on their own
    /// threads (burn-flex runs elementwise work on one thread, so one slice leaves the other
    /// cores idle). Fixed by the spec, not the machine's core count, so that a tower does not
    /// depend on the machine.
    pub slices: usize,
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

/// Seeds the backend's generator with `seed` and runs `init` (a module's random initialisation)
/// while no other caller does: burn's CPU backend keeps one generator per process, and the two
/// towers train side by side on threads of their own (`towers.rs`), so each tower's weights
/// start from its seed whatever the other is doing. Nothing else in a tower's training draws from
/// that generator.
pub fn seeded_init<B: Backend, T>(device: &B::Device, seed: u64, init: impl FnOnce() -> T) -> T {
    static INIT: Mutex<()> = Mutex::new(());
    let _alone = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    init()
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
/// warmup + cosine schedule), logging every 50 steps as `what`. Each step, `prepare(step)` runs
/// once and gives what the step's slices share (such as its samples) and the slices themselves
/// (ranges of the step's batch of `t.batch`: [`slices`], or [`balanced_slices`]); then
/// `loss_at(&prepared, step, slice, module)` on each slice's thread gives the part of the step's
/// loss that samples `slice` contribute (the step's loss is the sum over its slices: a per-sample
/// mean weighted by the slice's share of the batch, or a sum over the slice's tokens divided by the
/// batch's token count). The log holds each step's loss and the wall time; the caller adds its
/// held-out metrics.
///
/// `prepare(step + 1)` runs on a thread of its own while step `step`'s slices compute, so a
/// preparation that is sequential work (the LLM's samples are drawn and tokenised one by one) is
/// not done while the slices' threads wait for it. It must depend on its step alone (the towers'
/// samples are pure functions of their stream and index).
pub fn train_steps<B: AutodiffBackend, M: AutodiffModule<B> + Send, P: Send + Sync>(
    mut module: M,
    t: &TrainSpec,
    what: &'static str,
    prepare: impl Fn(usize) -> Result<(P, Vec<Range<usize>>), DemoError> + Sync,
    loss_at: impl Fn(&P, usize, Range<usize>, &M) -> Result<Tensor<B, 1>, DemoError> + Sync,
) -> Result<(M, TrainLog), DemoError> {
    let mut optim = AdamWConfig::new()
        .with_weight_decay(t.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init::<B, M>();
    let start = Instant::now();
    let mut log = TrainLog::default();
    let mut next = (t.steps > 0).then(|| prepare(0));
    for step in 0..t.steps {
        // Always prepared ahead: step 0 above, each later one by the step before it.
        let (prepared, slices) = next.take().unwrap_or_else(|| prepare(step))?;
        let device = module.devices().into_iter().next();
        let prepare = &prepare;
        let (results, upcoming): (Vec<Result<(f32, GradientsParams), DemoError>>, _) = std::thread::scope(|scope| {
            let ahead = (step + 1 < t.steps).then(|| scope.spawn(move || prepare(step + 1)));
            let handles: Vec<_> = slices
                .iter()
                .map(|slice| {
                    // Each thread its own autodiff leaves (the same parameter ids): burn 0.21's
                    // autodiff deadlocks when two threads' graphs share leaf nodes.
                    let module = match &device {
                        Some(device) => module.clone().fork(device),
                        None => module.clone(),
                    };
                    let (loss_at, prepared, slice) = (&loss_at, &prepared, slice.clone());
                    scope.spawn(move || {
                        let loss = loss_at(prepared, step, slice, &module)?;
                        let value: f32 = loss.clone().into_scalar().elem();
                        Ok((value, GradientsParams::from_grads(loss.backward(), &module)))
                    })
                })
                .collect();
            let results = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(DemoError::Train(format!("{what}: a training thread panicked")))))
                .collect();
            let upcoming = ahead.map(|h| h.join().unwrap_or_else(|_| Err(DemoError::Train(format!("{what}: a preparing thread panicked")))));
            (results, upcoming)
        });
        next = upcoming;
        let mut sum = GradientsAccumulator::<M>::new();
        let mut value = 0.0;
        for result in results {
            let (v, grads) = result?;
            value += v;
            sum.accumulate(&module, grads);
        }
        log.losses.push(value);
        module = optim.step(t.lr_at(step), module, sum.grads());
        if step % 50 == 0 || step + 1 == t.steps {
            tracing::info!(step, loss = value, "{what}");
        }
    }
    log.seconds = start.elapsed().as_secs_f64();
    Ok((module, log))
}

/// `n` contiguous, non-empty slices of `0..batch` (fewer when the batch is smaller than `n`),
/// the first ones one longer when `n` does not divide it.
pub fn slices(batch: usize, n: usize) -> Vec<Range<usize>> {
    let n = n.clamp(1, batch.max(1));
    let (base, extra) = (batch / n, batch % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// `n` contiguous, non-empty slices of `0..costs.len()` (fewer when there are fewer items) whose
/// summed costs are as even as contiguous cuts allow: each cut falls where the running total comes
/// nearest its share. For packed sequences, where a slice's work is its token count rather than
/// its sample count.
pub fn balanced_slices(costs: &[usize], n: usize) -> Vec<Range<usize>> {
    let items = costs.len();
    let n = n.clamp(1, items.max(1));
    let total: usize = costs.iter().sum();
    let (mut start, mut before) = (0, 0);
    let mut out = Vec::with_capacity(n);
    for k in 1..n {
        let target = total * k / n;
        // Slice k - 1 takes items from `start` while each one brings its running total nearer the
        // target, leaving one item at least for each slice after it.
        let (mut end, mut sum) = (start + 1, before + costs[start]);
        while end < items - (n - k) && 2 * sum + costs[end] < 2 * target {
            sum += costs[end];
            end += 1;
        }
        out.push(start..end);
        (start, before) = (end, sum);
    }
    out.push(start..items);
    out
}
