//! One data-parallel replica: its copy of the weights, and one optimizer step over its share of
//! a global batch (forward and backward per micro-batch, gradients summed across replicas,
//! clipping, AdamW). The first replica runs on the trainer's thread, the others on their own.

use std::time::{Duration, Instant};

use anchorage_llm::{LayerHooks, Llm, NoHooks};
use anchorage_model::{encode_images, forward_loss, MicroBatch, SpliceInput, VisionSelect};
use anchorage_vision::ClipVisionModel;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::AutodiffBackend, ElementConversion, Tensor, TensorData};

use super::parallel::{Peer, World};
use super::source::Sample;
use super::step::{model_err, record_err, HooksFactory, Trainable};
use crate::grad_norm::clip_global_norm;
use crate::recipe::LossMean;
use crate::{Plan, Recipe, TrainError};

#[derive(Default)]
pub(super) struct Timer {
    pub(super) data: Duration,
    pub(super) vision: Duration,
    pub(super) forward: Duration,
    pub(super) backward: Duration,
    pub(super) reduce: Duration,
    pub(super) optimizer: Duration,
}

/// Skip reasons whose counts are summed across nodes (anchorage-data's fault names); a reason
/// outside this list is counted on its own node only.
pub(super) const KNOWN_SKIP_REASONS: [&str; 6] = ["missing_image", "corrupt_image", "bad_image_path", "malformed", "over_length", "tokenization_mismatch"];

pub(super) type AdamWOptimizer<B> = OptimizerAdaptor<AdamW, Trainable<B>, B>;

/// AdamW with the recipe's betas, epsilon and weight decay (burn's defaults differ).
pub(super) fn new_optimizer<B: AutodiffBackend>(o: &crate::recipe::OptimSection) -> AdamWOptimizer<B> {
    AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, Trainable<B>>()
}

/// What every replica needs to run a step, shared read-only.
pub(super) struct StepContext<'a, B: AutodiffBackend> {
    pub(super) recipe: &'a Recipe,
    pub(super) plan: &'a Plan,
    pub(super) pad_id: i64,
    pub(super) hooks: Option<HooksFactory<B>>,
    pub(super) select: VisionSelect,
    pub(super) image_size: usize,
    /// Several replicas: gradients and the step's numbers are summed across them.
    pub(super) parallel: bool,
}

/// One data-parallel replica: its copy of the trainable weights and of the frozen towers.
pub(super) struct Replica<B: AutodiffBackend> {
    pub(super) trainable: Trainable<B>,
    pub(super) frozen_llm: Option<Llm<B>>,
    pub(super) vision: ClipVisionModel<B::InnerBackend>,
    pub(super) device: B::Device,
    pub(super) peer: Option<Peer>,
}

/// One step's share of a replica: its micro-batches (bad samples already dropped) and the lr.
pub(super) struct Work {
    pub(super) slices: Vec<Vec<Sample>>,
    pub(super) lr: f64,
}

/// A step's numbers, summed over every replica.
pub(super) struct StepOutcome {
    /// As transformers reports it: the mean of the micro-batch losses (or the global-batch mean).
    pub(super) loss: f64,
    pub(super) grad_norm: f64,
    pub(super) samples: usize,
    pub(super) tokens: usize,
    /// The caller's extra numbers, summed.
    pub(super) extra: Vec<f64>,
}

impl<B: AutodiffBackend> Replica<B> {
    /// Forward and backward over this replica's micro-batches, gradients summed across replicas,
    /// clipping and the optimizer step. `extra` numbers are summed across replicas alongside.
    pub(super) fn step(
        mut self,
        ctx: &StepContext<'_, B>,
        slices: Vec<Vec<Sample>>,
        lr: f64,
        extra: &[f64],
        optim: &mut AdamWOptimizer<B>,
        timer: &mut Timer,
    ) -> Result<(Self, StepOutcome), TrainError> {
        let (recipe, plan, o) = (ctx.recipe, ctx.plan, &ctx.recipe.optim);
        // Micro-batches of the whole step across replicas: LLaVA divides each micro-batch mean by
        // the accumulation steps and DDP averages over devices; dividing by their product is both.
        let micro_total = (plan.world_size * plan.grad_accum) as f32;
        let supervised = |s: &Sample| s.labels.iter().filter(|&&l| l != anchorage_model::IGNORE_INDEX).count();
        let global_tokens = match o.loss_mean {
            LossMean::GlobalBatch => {
                let own = slices.iter().flatten().map(supervised).sum::<usize>() as f64;
                match &self.peer {
                    Some(peer) => peer.sum_values::<B::InnerBackend>(&[own], &self.device)?[0],
                    None => own,
                }
            }
            LossMean::MicroBatch => 0.0,
        };
        let mut accumulator = GradientsAccumulator::<Trainable<B>>::new();
        let (mut loss_sum, mut micro_batches, mut tokens, mut samples) = (0.0, 0usize, 0usize, 0usize);
        for chunk in slices.iter().filter(|c| !c.is_empty()) {
            let t = Instant::now();
            let (pixels, image_of) = stack_images::<B>(chunk, ctx.image_size, &self.device);
            let (features, cls) = encode_images::<B>(&self.vision, &ctx.select, pixels).map_err(model_err)?;
            timer.vision += t.elapsed();
            let t = Instant::now();
            let batch = MicroBatch {
                samples: chunk
                    .iter()
                    .zip(&image_of)
                    .map(|(s, img)| SpliceInput { input_ids: &s.input_ids, labels: &s.labels, images: img.as_slice() })
                    .collect(),
                max_len: recipe.data.max_length,
                pad_id: ctx.pad_id,
            };
            let llm = self.trainable.llm.as_ref().or(self.frozen_llm.as_ref()).ok_or_else(|| TrainError::Model("no LLM".into()))?;
            let mut no_hooks = NoHooks;
            let mut made;
            let hooks: &mut dyn LayerHooks<B> = match &ctx.hooks {
                Some(factory) => {
                    made = factory();
                    made.as_mut()
                }
                None => &mut no_hooks,
            };
            let out = forward_loss(&self.trainable.connector, llm, &batch, features, cls, hooks).map_err(model_err)?;
            tokens += out.tokens;
            samples += chunk.len();
            micro_batches += 1;
            let loss = match o.loss_mean {
                LossMean::MicroBatch => out.loss.mean() / micro_total,
                LossMean::GlobalBatch => out.loss.sum / (global_tokens.max(1.0) as f32),
            };
            let value: f64 = loss.clone().into_scalar().elem();
            loss_sum += value;
            timer.forward += t.elapsed();
            let t = Instant::now();
            let grads = GradientsParams::from_grads(loss.backward(), &self.trainable);
            accumulator.accumulate(&self.trainable, grads);
            timer.backward += t.elapsed();
        }

        let mut grads = accumulator.grads();
        let mut numbers = vec![loss_sum, micro_batches as f64, tokens as f64, samples as f64];
        numbers.extend_from_slice(extra);
        if let Some(peer) = &self.peer {
            let t = Instant::now();
            grads = peer.sum_gradients(&self.trainable, grads)?;
            numbers = peer.sum_values::<B::InnerBackend>(&numbers, &self.device)?;
            timer.reduce += t.elapsed();
        }
        let t = Instant::now();
        let grad_norm = clip_global_norm(&self.trainable, &mut grads, o.grad_clip);
        self.trainable = optim.step(lr, self.trainable, grads);
        timer.optimizer += t.elapsed();

        // Reported like transformers: the mean of the micro-batch losses of the step.
        let loss = match o.loss_mean {
            LossMean::MicroBatch => numbers[0] * f64::from(micro_total) / numbers[1].max(1.0),
            LossMean::GlobalBatch => numbers[0],
        };
        let outcome = StepOutcome { loss, grad_norm, samples: numbers[3] as usize, tokens: numbers[2] as usize, extra: numbers[4..].to_vec() };
        Ok((self, outcome))
    }
}

/// A local replica other than the first: registers, then runs the step of every `Work` it is fed
/// until the feed closes. A failure here would leave the other replicas waiting in an all-reduce
/// for ever, so it ends the process with the reason instead.
pub(super) fn run_worker<B: AutodiffBackend>(
    mut replica: Replica<B>,
    ctx: &StepContext<'_, B>,
    world: &World,
    local: usize,
    optim_bytes: Option<Vec<u8>>,
    feed: std::sync::mpsc::Receiver<Work>,
) {
    let fail = |e: TrainError| -> ! {
        tracing::error!(replica = local, error = %e, "data-parallel replica failed");
        eprintln!("error: data-parallel replica {local} failed: {e}");
        std::process::exit(1);
    };
    let mut optim = new_optimizer::<B>(&ctx.recipe.optim);
    if let Some(bytes) = optim_bytes {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        match recorder.load(bytes, &replica.device) {
            Ok(record) => optim = optim.load_record(record),
            Err(e) => fail(record_err(std::path::Path::new("optimizer.bin"), e)),
        }
    }
    replica.peer = Some(Peer::register::<B::InnerBackend>(world, local, &replica.device, None).unwrap_or_else(|e| fail(e)));
    let mut timer = Timer::default();
    let extra = if world.nodes > 1 { vec![0.0; KNOWN_SKIP_REASONS.len()] } else { Vec::new() };
    while let Ok(work) = feed.recv() {
        replica = match replica.step(ctx, work.slices, work.lr, &extra, &mut optim, &mut timer) {
            Ok((next, _)) => next,
            Err(e) => fail(e),
        };
    }
    if let Some(peer) = &replica.peer {
        peer.finish::<B::InnerBackend>();
    }
}

/// Stacks the micro-batch's images `[images, 3, S, S]` and says which image each sample uses. A
/// micro-batch without any image gets one zero image, as LLaVA feeds text-only samples, so the
/// connector stays in the graph (its gradient is then zero).
fn stack_images<B: AutodiffBackend>(
    chunk: &[Sample],
    size: usize,
    device: &B::Device,
) -> (Tensor<B::InnerBackend, 4>, Vec<Vec<usize>>) {
    let mut flat = Vec::new();
    let mut image_of = Vec::with_capacity(chunk.len());
    let mut count = 0;
    for s in chunk {
        match &s.pixels {
            Some(p) if s.input_ids.contains(&anchorage_model::IMAGE_TOKEN_INDEX) => {
                flat.extend_from_slice(p);
                image_of.push(vec![count]);
                count += 1;
            }
            _ => image_of.push(Vec::new()),
        }
    }
    if count == 0 {
        flat = vec![0.0; 3 * size * size];
        count = 1;
    }
    (Tensor::from_data(TensorData::new(flat, [count, 3, size, size]), device), image_of)
}
