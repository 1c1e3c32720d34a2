//! One data-parallel replica: its copy of the model, and one optimizer step over its share of a
//! global batch (forward and backward per micro-batch, gradients summed across replicas, clipping,
//! AdamW). The first replica runs on the trainer's thread, the others on their own (`workers.rs`).
//!
//! A replica whose forward fails still takes part in the step's sums, so the other replicas never
//! wait for it in an all-reduce; it then reports the error instead of stepping.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anchorage_data::Sample;
use anchorage_model::{Llava, Trainable, IGNORE_INDEX};
use burn::module::ParamId;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::AutodiffBackend, ElementConversion};

use super::master::{add_gradients, gradients_to_f32, Masters};
use super::parallel::Peer;
use super::zero;
use crate::grad_norm::{clip_global_norm, clip_sharded_global_norm};
use crate::recipe::{LossMean, OptimSection};
use crate::{Settings, TrainError};

/// Where a step's time went, summed over the run.
#[derive(Debug, Default, Clone)]
pub struct Timer {
    pub data: Duration,
    pub vision: Duration,
    pub forward: Duration,
    pub backward: Duration,
    pub reduce: Duration,
    pub optimizer: Duration,
}

impl Timer {
    /// Seconds per phase, in the order the log prints them.
    pub fn breakdown(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("data wait", self.data.as_secs_f64()),
            ("vision", self.vision.as_secs_f64()),
            ("connector + llm forward", self.forward.as_secs_f64()),
            ("backward", self.backward.as_secs_f64()),
            ("all-reduce", self.reduce.as_secs_f64()),
            ("optimizer", self.optimizer.as_secs_f64()),
        ]
    }
}

pub(crate) type AdamWOptimizer<B> = OptimizerAdaptor<AdamW, Trainable<B>, B>;

/// AdamW with the recipe's betas, epsilon and weight decay (burn's defaults differ).
pub(crate) fn new_optimizer<B: AutodiffBackend>(o: &OptimSection) -> AdamWOptimizer<B> {
    AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, Trainable<B>>()
}

/// One data-parallel replica.
pub(crate) struct Replica<B: AutodiffBackend> {
    pub(crate) model: Llava<B, B::InnerBackend>,
    /// The other replicas, when there are any.
    pub(crate) peer: Option<Peer>,
    /// ZeRO-1: the parameters this replica steps and keeps AdamW state for (`zero.rs`); `None`
    /// when every replica steps every parameter.
    pub(crate) owned: Option<HashSet<ParamId>>,
    /// ZeRO-1 of a bf16 LLM trained in full: the f32 masters of the owned LLM parameters, the
    /// model holding the LLM in bf16 (`master.rs`); `None` otherwise.
    pub(crate) masters: Option<Masters>,
}

/// A step's numbers, summed over every replica.
pub(crate) struct StepOutcome {
    /// As transformers reports it: the mean of the micro-batch losses (or the global-batch mean).
    pub(crate) loss: f64,
    pub(crate) grad_norm: f64,
    /// Whether the optimizer stepped (false when the loss or gradient norm was not finite).
    pub(crate) applied: bool,
    pub(crate) samples: usize,
    pub(crate) tokens: usize,
    /// The caller's extra numbers, summed.
    pub(crate) extra: Vec<f64>,
}

/// What this replica's micro-batches produced before the sums.
struct Local {
    grads: GradientsParams,
    /// loss sum, micro-batches, tokens, samples, then the caller's extra numbers.
    numbers: Vec<f64>,
    /// The first forward that failed (the rest of the replica's slices are not run).
    error: Option<TrainError>,
}

impl<B: AutodiffBackend> Replica<B> {
    /// Forward and backward over this replica's micro-batches, gradients summed across replicas,
    /// clipping and the optimizer step. `extra` numbers are summed across replicas alongside.
    pub(crate) fn step(
        mut self,
        settings: &Settings,
        slices: &[Vec<Sample>],
        lr: f64,
        extra: &[f64],
        optim: &mut AdamWOptimizer<B>,
        timer: &mut Timer,
    ) -> (Self, Result<StepOutcome, TrainError>) {
        let result = self.try_step(settings, slices, lr, extra, optim, timer);
        (self, result)
    }

    fn try_step(&mut self, settings: &Settings, slices: &[Vec<Sample>], lr: f64, extra: &[f64], optim: &mut AdamWOptimizer<B>, timer: &mut Timer) -> Result<StepOutcome, TrainError> {
        let o = &settings.optim;
        // Micro-batches of the whole step across replicas: LLaVA divides each micro-batch mean by
        // the accumulation steps and DDP averages over devices; dividing by their product is both.
        let micro_total = (settings.plan.world_size * settings.plan.grad_accum) as f32;
        let global_tokens = self.global_tokens(o.loss_mean, slices)?;
        let mut local = self.accumulate(settings, slices, micro_total, global_tokens, timer);
        local.numbers.extend_from_slice(extra);
        // Under ZeRO-1 a rank keeps the summed gradients of its own parameters only, and the
        // global norm is summed from each rank's share (`clip_sharded_global_norm`).
        let (mut grads, numbers) = match &self.peer {
            Some(peer) => {
                let t = Instant::now();
                let grads = match &self.owned {
                    Some(owned) => peer.sum_owned_gradients(&self.model.trainable, local.grads, owned)?,
                    None => peer.sum_gradients(&self.model.trainable, local.grads)?,
                };
                let numbers = peer.sum_values::<B::InnerBackend>(&local.numbers, &self.model.device)?;
                timer.reduce += t.elapsed();
                (grads, numbers)
            }
            None => (gradients_to_f32(&self.model.trainable, local.grads), local.numbers),
        };
        if let Some(e) = local.error {
            return Err(e);
        }
        let t = Instant::now();
        let grad_norm = match (&self.owned, &self.peer) {
            (Some(_), Some(peer)) => {
                let device = &self.model.device;
                clip_sharded_global_norm(&self.model.trainable, &mut grads, o.grad_clip, |squares| peer.sum_values::<B::InnerBackend>(squares, device))?
            }
            _ => clip_global_norm(&self.model.trainable, &mut grads, o.grad_clip),
        };
        // Reported like transformers: the mean of the micro-batch losses of the step.
        let loss = match o.loss_mean {
            LossMean::MicroBatch => numbers[0] * f64::from(micro_total) / numbers[1].max(1.0),
            LossMean::GlobalBatch => numbers[0],
        };
        // A NaN or infinite loss or norm would poison the weights and AdamW's moments: the step
        // is skipped. Every replica sees the same summed numbers, so all skip it together.
        let applied = loss.is_finite() && grad_norm.is_finite();
        if applied {
            let trainable = self.model.trainable.clone();
            self.model.trainable = match (&self.owned, &self.peer) {
                (Some(owned), Some(peer)) => {
                    let grads = zero::keep_owned(&trainable, grads, owned);
                    let stepped = match &mut self.masters {
                        Some(masters) => masters.step(optim, lr, trainable, grads),
                        None => optim.step(lr, trainable, grads),
                    };
                    zero::share_owned(peer, stepped, owned)?
                }
                _ => optim.step(lr, trainable, grads),
            };
        }
        timer.optimizer += t.elapsed();
        Ok(StepOutcome { loss, grad_norm, applied, samples: numbers[3] as usize, tokens: numbers[2] as usize, extra: numbers[4..].to_vec() })
    }

    /// Supervised tokens of the whole step across replicas (only for the global-batch mean).
    fn global_tokens(&self, mean: LossMean, slices: &[Vec<Sample>]) -> Result<f64, TrainError> {
        if mean == LossMean::MicroBatch {
            return Ok(0.0);
        }
        let own = slices.iter().flatten().map(|s| s.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()).sum::<usize>() as f64;
        Ok(match &self.peer {
            Some(peer) => peer.sum_values::<B::InnerBackend>(&[own], &self.model.device)?[0],
            None => own,
        })
    }

    /// Forward and backward of each non-empty micro-batch, gradients added without rounding
    /// ([`add_gradients`]: a bf16 LLM's under a sharded master stays bf16 while it is the only
    /// one, and the sum across the ranks takes it to f32 bucket by bucket).
    fn accumulate(&self, settings: &Settings, slices: &[Vec<Sample>], micro_total: f32, global_tokens: f64, timer: &mut Timer) -> Local {
        let mut accumulated = GradientsParams::new();
        let (mut loss_sum, mut micro_batches, mut tokens, mut samples) = (0.0, 0usize, 0usize, 0usize);
        let mut error = None;
        for chunk in slices.iter().filter(|c| !c.is_empty()) {
            let t = Instant::now();
            let out = match self.model.forward_loss(chunk, settings.max_len, settings.pad_id) {
                Ok(out) => out,
                Err(e) => {
                    error = Some(e.into());
                    break;
                }
            };
            timer.vision += out.vision_time;
            tokens += out.tokens;
            samples += chunk.len();
            micro_batches += 1;
            let loss = match settings.optim.loss_mean {
                LossMean::MicroBatch => out.loss.mean() / micro_total,
                LossMean::GlobalBatch => out.loss.sum / (global_tokens.max(1.0) as f32),
            };
            let value: f64 = loss.clone().into_scalar().elem();
            loss_sum += value;
            timer.forward += t.elapsed().saturating_sub(out.vision_time);
            let t = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &self.model.trainable);
            add_gradients(&self.model.trainable, &mut accumulated, grads);
            timer.backward += t.elapsed();
        }
        Local { grads: accumulated, numbers: vec![loss_sum, micro_batches as f64, tokens as f64, samples as f64], error }
    }
}
