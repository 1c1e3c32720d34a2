//! The demo's vision tower: a tiny CLIP ViT trained to name what it sees. A linear probe on the
//! pooled CLS token (`post_layernorm`) predicts the shape, the colour and the place (3x3 grid), so
//! the CLS token has to gather the shape's patches: its attention then falls on the shape, which
//! is what AcFormer's anchors select. The probe is dropped; the tower is saved alone.


use anchorage_data::image::{preprocess_rgb, ClipImageProcessor, Rgb8Image};
use anchorage_data::synth::{render, Scene};
use anchorage_data::{Aspect, SplitMix64};
use anchorage_vision::{ClipVisionConfig, ClipVisionModel, VisionRequest};
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schedule::{seeded_init, slices, train_steps, TrainLog, TrainSpec};
use crate::DemoError;

const SHAPES: usize = 3;
const COLOURS: usize = 8;
const PLACES: usize = 9;

/// What the vision tower is and how it trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionSpec {
    pub config: ClipVisionConfig,
    pub train: TrainSpec,
}

impl Default for VisionSpec {
    /// 64 px, patch 8 (64 patches + CLS), width 64, 3 layers of 4 heads, MLP 256; 1500 steps of
    /// 32 images (about a minute and a half on two CPU cores in a release build).
    fn default() -> Self {
        Self {
            config: ClipVisionConfig::new(64, 8, 64, 256, 3, 4),
            train: TrainSpec {
                steps: 1500,
                batch: 32,
                lr: 3e-3,
                warmup: 15,
                weight_decay: 0.01,
                slices: 2,
            },
        }
    }
}

/// Per-patch classes: background or one of the shapes, background or one of the colours.
const PATCH_CLASSES: usize = (1 + SHAPES) + (1 + COLOURS);

/// The tower with its training probes.
#[derive(Module, Debug)]
pub struct VisionProbe<B: Backend> {
    pub tower: ClipVisionModel<B>,
    /// `[D] -> [3 shapes | 8 colours | 9 places]`, on the pooled CLS token.
    pub head: Linear<B>,
    /// `[D] -> [background or shape (4) | background or colour (9)]`, on each patch token of the
    /// layer connectors read (`hidden_states[-2]`, LLaVA's select layer).
    pub patch_head: Linear<B>,
}

/// The probes' logits.
pub struct ProbeLogits<B: Backend> {
    /// `[B, 20]` from the pooled CLS token.
    pub cls: Tensor<B, 2>,
    /// `[B * N, 13]` from the `N` patch tokens of `hidden_states[-2]`, image-major.
    pub patches: Tensor<B, 2>,
}

impl<B: Backend> VisionProbe<B> {
    pub fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        Self {
            tower: config.init(device),
            head: LinearConfig::new(config.hidden_size, SHAPES + COLOURS + PLACES).init(device),
            patch_head: LinearConfig::new(config.hidden_size, PATCH_CLASSES).init(device),
        }
    }

    /// # Shapes
    /// `pixel_values [B, 3, S, S] -> cls [B, 20], patches [B * N, 13]`
    ///
    /// The tower runs up to `hidden_states[-2]`, and its last layer at the CLS token alone
    /// (`ClipEncoderLayer::forward_cls`): nothing else of that layer reaches a probe, so the rest
    /// of it would be work without a gradient (about a quarter of the tower's).
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Result<ProbeLogits<B>, DemoError> {
        let read = self.tower.forward(pixel_values, &VisionRequest::select(-2))?.selected;
        let [b, t, d] = read.dims();
        let last = match self.tower.encoder.layers.last() {
            Some(layer) => layer.forward_cls(read.clone()),
            None => read.clone().slice([0..b, 0..1, 0..d]),
        };
        let cls = self.tower.post_layernorm.forward(last.reshape([b, d]));
        let patches = read.slice([0..b, 1..t, 0..d]).reshape([b * (t - 1), d]);
        Ok(ProbeLogits {
            cls: self.head.forward(cls),
            patches: self.patch_head.forward(patches),
        })
    }
}

/// A batch of rendered, CLIP-preprocessed scenes and their targets.
pub struct VisionBatch<B: Backend> {
    pub pixels: Tensor<B, 4>,
    /// `[B]` each: shape, colour, place indices.
    pub shape: Tensor<B, 1, Int>,
    pub colour: Tensor<B, 1, Int>,
    pub place: Tensor<B, 1, Int>,
    /// `[B * N]` each: per patch, 0 (background) or 1 + the shape / colour index.
    pub patch_shape: Tensor<B, 1, Int>,
    pub patch_colour: Tensor<B, 1, Int>,
    pub scenes: Vec<Scene>,
}

fn place_index(s: &Scene) -> i64 {
    let third = |v: f32| ((v / s.size as f32 * 3.0).floor() as i64).clamp(0, 2);
    third(s.cy) * 3 + third(s.cx)
}

/// Renders `count` scenes of stream `(seed, stream, batch)` and preprocesses them as
/// CLIPImageProcessor does; per-patch labels for patches of `patch` pixels.
pub fn vision_batch<B: Backend>(
    seed: u64,
    stream: u64,
    batch: u64,
    count: usize,
    size: u32,
    patch: usize,
    device: &B::Device,
) -> VisionBatch<B> {
    vision_samples(seed, stream, batch * count as u64, count, size, patch, device)
}

/// Scenes `first..first + count` of stream `(seed, stream)`, as [`vision_batch`] makes them.
pub fn vision_samples<B: Backend>(
    seed: u64,
    stream: u64,
    first: u64,
    count: usize,
    size: u32,
    patch: usize,
    device: &B::Device,
) -> VisionBatch<B> {
    let processor = ClipImageProcessor::with_size(size);
    let items: Vec<(Scene, Vec<f32>)> = (0..count)
        .into_par_iter()
        .map(|k| {
            let mut rng = SplitMix64::for_epoch(seed, stream, first + k as u64);
            let scene = Scene::sample(&mut rng, size);
            let img = render(&scene);
            let rgb = Rgb8Image::new(size as usize, size as usize, img.into_raw());
            let px = preprocess_rgb(&rgb, Aspect::Square, &processor);
            (scene, px.data)
        })
        .collect();
    let s = size as usize;
    let pixels: Vec<f32> = items.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let grid = s / patch;
    let covered: Vec<bool> = items.iter().flat_map(|(sc, _)| shape_covers(sc, grid)).collect();
    let per_patch = |f: &dyn Fn(&Scene) -> i64| {
        let v: Vec<i64> = items
            .iter()
            .flat_map(|(sc, _)| std::iter::repeat_n(f(sc), grid * grid))
            .zip(&covered)
            .map(|(label, &on)| if on { 1 + label } else { 0 })
            .collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(v, [count * grid * grid]), device)
    };
    let ints = |f: &dyn Fn(&Scene) -> i64| {
        let v: Vec<i64> = items.iter().map(|(sc, _)| f(sc)).collect();
        Tensor::<B, 1, Int>::from_data(TensorData::new(v, [count]), device)
    };
    VisionBatch {
        pixels: Tensor::from_data(TensorData::new(pixels, [count, 3, s, s]), device),
        shape: ints(&|sc| sc.shape.index() as i64),
        colour: ints(&|sc| sc.colour.index() as i64),
        place: ints(&|sc| place_index(sc)),
        patch_shape: per_patch(&|sc| sc.shape.index() as i64),
        patch_colour: per_patch(&|sc| sc.colour.index() as i64),
        scenes: items.into_iter().map(|(sc, _)| sc).collect(),
    }
}

/// Which patches (row-major, `grid`x`grid`) the shape touches: any of 5x5 sample points inside.
pub fn shape_patches(scene: &Scene, grid: usize) -> Vec<bool> {
    let p = scene.size as f32 / grid as f32;
    (0..grid * grid)
        .map(|k| {
            let (r, c) = ((k / grid) as f32, (k % grid) as f32);
            (0..25).any(|j| {
                let (dy, dx) = ((j / 5) as f32 + 0.5, (j % 5) as f32 + 0.5);
                scene.contains((c + dx / 5.0) * p, (r + dy / 5.0) * p)
            })
        })
        .collect()
}

/// Which patches (row-major, `grid`x`grid`) the shape covers: at least a third of 5x5 sample
/// points inside (the per-patch probe's foreground).
pub fn shape_covers(scene: &Scene, grid: usize) -> Vec<bool> {
    let p = scene.size as f32 / grid as f32;
    (0..grid * grid)
        .map(|k| {
            let (r, c) = ((k / grid) as f32, (k % grid) as f32);
            let inside = (0..25)
                .filter(|j| {
                    let (dy, dx) = ((j / 5) as f32 + 0.5, (j % 5) as f32 + 0.5);
                    scene.contains((c + dx / 5.0) * p, (r + dy / 5.0) * p)
                })
                .count();
            inside * 3 >= 25
        })
        .collect()
}

/// How much of the CLS row's attention (layer `L - 2`, AcFormer's `attentions[-2]`, mean over
/// heads, patches only, renormalised) falls on the shape's patches, and the share of patches the
/// shape touches: attention "on the shape" is the first well above the second.
pub fn cls_attention_on_shape<B: Backend>(
    tower: &ClipVisionModel<B>,
    batch: &VisionBatch<B>,
) -> Result<(f32, f32), DemoError> {
    let layer = tower.num_layers().saturating_sub(2);
    let out = tower.forward(
        batch.pixels.clone(),
        &VisionRequest::select(0).with_cls_attention(layer),
    )?;
    let probs = out.cls_attention[0].1.clone().mean_dim(1); // [B, 1, T]
    let [b, _, t] = probs.dims();
    let rows: Vec<f32> = probs
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| DemoError::Train(format!("{e:?}")))?;
    let grid = ((t - 1) as f64).sqrt() as usize;
    let (mut mass, mut area) = (0.0f32, 0.0f32);
    for (i, scene) in batch.scenes.iter().enumerate() {
        let row = &rows[i * t + 1..(i + 1) * t];
        let on = shape_patches(scene, grid);
        let total: f32 = row.iter().sum();
        mass += row.iter().zip(&on).filter(|(_, &o)| o).map(|(a, _)| a).sum::<f32>() / total.max(1e-12);
        area += on.iter().filter(|&&o| o).count() as f32 / on.len() as f32;
    }
    Ok((mass / b as f32, area / b as f32))
}

/// The probes' loss: cross-entropy of shape + colour + place from CLS, plus the per-patch
/// cross-entropies (background or shape, background or colour) averaged over patches.
fn probe_loss<B: Backend>(logits: ProbeLogits<B>, batch: &VisionBatch<B>) -> Tensor<B, 1> {
    let [b, _] = logits.cls.dims();
    let [n, _] = logits.patches.dims();
    let ce = CrossEntropyLossConfig::new().init(&logits.cls.device());
    let part = |lo: usize, hi: usize| logits.cls.clone().slice([0..b, lo..hi]);
    let patch = |lo: usize, hi: usize| logits.patches.clone().slice([0..n, lo..hi]);
    ce.forward(part(0, SHAPES), batch.shape.clone())
        + ce.forward(part(SHAPES, SHAPES + COLOURS), batch.colour.clone())
        + ce.forward(part(SHAPES + COLOURS, SHAPES + COLOURS + PLACES), batch.place.clone())
        + ce.forward(patch(0, 1 + SHAPES), batch.patch_shape.clone())
        + ce.forward(patch(1 + SHAPES, PATCH_CLASSES), batch.patch_colour.clone())
}

fn hit_rate<B: Backend>(logits: Tensor<B, 2>, target: &Tensor<B, 1, Int>) -> f32 {
    let [b, _] = logits.dims();
    let pred = logits.argmax(1).reshape([b]);
    let hits: i64 = pred.equal(target.clone()).int().sum().into_scalar().elem();
    hits as f32 / b as f32
}

/// Accuracy over the rows whose target is not background (0).
fn foreground_hit_rate<B: Backend>(logits: Tensor<B, 2>, target: &Tensor<B, 1, Int>) -> f32 {
    let [b, _] = logits.dims();
    let pred = logits.argmax(1).reshape([b]);
    let fg = target.clone().greater_elem(0).int();
    let hits: i64 = (pred.equal(target.clone()).int() * fg.clone())
        .sum()
        .into_scalar()
        .elem();
    let total: i64 = fg.sum().into_scalar().elem();
    hits as f32 / total.max(1) as f32
}

/// Accuracy of (shape, colour, place) from CLS and of the shape on the patches it covers.
pub fn probe_accuracy<B: Backend>(probe: &VisionProbe<B>, batch: &VisionBatch<B>) -> Result<[f32; 4], DemoError> {
    let logits = probe.forward(batch.pixels.clone())?;
    let [b, _] = logits.cls.dims();
    let [n, _] = logits.patches.dims();
    let part = |lo: usize, hi: usize| logits.cls.clone().slice([0..b, lo..hi]);
    Ok([
        hit_rate(part(0, SHAPES), &batch.shape),
        hit_rate(part(SHAPES, SHAPES + COLOURS), &batch.colour),
        hit_rate(part(SHAPES + COLOURS, SHAPES + COLOURS + PLACES), &batch.place),
        foreground_hit_rate(logits.patches.slice([0..n, 0..1 + SHAPES]), &batch.patch_shape),
    ])
}

/// Streams of scenes: training batches never repeat the held-out ones.
const TRAIN_STREAM: u64 = 100;
pub const HELD_OUT_STREAM: u64 = 101;

/// Trains the tower with its probe; returns the probe (on the inner backend) and the losses.
pub fn train_vision<B: AutodiffBackend>(
    spec: &VisionSpec,
    seed: u64,
    device: &B::Device,
) -> Result<(VisionProbe<B::InnerBackend>, TrainLog), DemoError> {
    spec.config.check().map_err(DemoError::Train)?;
    let init = seeded_init::<B, _>(device, seed, || VisionProbe::<B>::new(&spec.config, device));
    let t = &spec.train;
    let (probe, mut log) = train_steps(init, t, "vision tower", |_| Ok(((), slices(t.batch, t.slices))), |_, step, slice, probe| {
        let first = (step * t.batch + slice.start) as u64;
        let batch = vision_samples::<B>(seed, TRAIN_STREAM, first, slice.len(), spec.config.image_size as u32, spec.config.patch_size, device);
        let logits = probe.forward(batch.pixels.clone())?;
        // A per-image mean, weighted by the slice's share of the batch.
        Ok(probe_loss(logits, &batch).mul_scalar(slice.len() as f64 / t.batch as f64))
    })?;
    let probe = probe.valid();
    let held_out = vision_batch::<B::InnerBackend>(
        seed,
        HELD_OUT_STREAM,
        0,
        256,
        spec.config.image_size as u32,
        spec.config.patch_size,
        device,
    );
    let [shape, colour, place, patch_shape] = probe_accuracy(&probe, &held_out)?;
    let (on_shape, shape_area) = cls_attention_on_shape(&probe.tower, &held_out)?;
    tracing::info!(
        seconds = log.seconds,
        shape,
        colour,
        place,
        patch_shape,
        on_shape,
        shape_area,
        "vision tower: held-out accuracy and CLS attention on the shape"
    );
    log.metrics = vec![
        ("shape_accuracy".into(), shape),
        ("colour_accuracy".into(), colour),
        ("place_accuracy".into(), place),
        ("patch_shape_accuracy".into(), patch_shape),
        ("cls_attention_on_shape".into(), on_shape),
        ("shape_patch_share".into(), shape_area),
    ];
    Ok((probe, log))
}
