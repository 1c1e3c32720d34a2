//! [`ClipVisionModel`]: the tower, with the two seams the rest of anchorage uses: the hidden state
//! of a select layer (computing no layer after it) and the CLS-row attention probabilities of
//! chosen layers (transformers `CLIPVisionTransformer`, `CLIPEncoder`,
//! huggingface/transformers `src/transformers/models/clip/modeling_clip.py`).

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{check_input_size, ClipVisionConfig};
use crate::embeddings::ClipVisionEmbeddings;
use crate::error::{Result, VisionError};
use crate::layer::ClipEncoderLayer;

/// `encoder.layers.*`.
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub layers: Vec<ClipEncoderLayer<B>>,
}

/// The CLIP vision tower. Field names are the checkpoint's module names (`pre_layrnorm`, sic).
#[derive(Module, Debug)]
pub struct ClipVisionModel<B: Backend> {
    pub embeddings: ClipVisionEmbeddings<B>,
    pub pre_layrnorm: LayerNorm<B>,
    pub encoder: ClipEncoder<B>,
    /// Applied to the CLS token for the pooled output only; never part of `hidden_states`.
    pub post_layernorm: LayerNorm<B>,
    /// Side of the input image the position table was made for.
    pub image_size: usize,
}

/// Which tokens of a hidden state become the features (LLaVA's `mm_vision_select_feature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSelect {
    /// Patch tokens only: `[B, T-1, D]` (LLaVA's default, `'patch'`).
    Patch,
    /// CLS and patch tokens: `[B, T, D]` (`'cls_patch'`; AcFormer keeps CLS).
    ClsPatch,
}

/// What one forward pass computes. Layers after the deepest one asked for are not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionRequest {
    /// Index into transformers' `hidden_states` (0 = `pre_layrnorm` output, `i` = output of
    /// encoder layer `i`, `L` = last); negative counts from the end (LLaVA: `-2`).
    pub select_layer: i64,
    /// 0-based encoder layers whose CLS-row attention probabilities to return. Layer `i`
    /// produces `hidden_states[i + 1]`, so AcFormer's `attentions[-2]` is layer `L - 2`.
    pub cls_attention_layers: Vec<usize>,
    /// Keep every hidden state from 0 to the select layer (for inspection); otherwise only the
    /// selected one is kept.
    pub all_hidden_states: bool,
    /// Accept inputs of another size than the config's `image_size` (any height and width that
    /// are multiples of the patch size) and interpolate the position embeddings to their patch
    /// grid, as transformers' `interpolate_pos_encoding=True` does (e.g. a 336 px CLIP at 672 or
    /// 1008 px). Without it, the input must be `image_size × image_size`.
    pub interpolate_pos_encoding: bool,
}

impl VisionRequest {
    /// Only `hidden_states[select_layer]`.
    pub fn select(select_layer: i64) -> Self {
        Self {
            select_layer,
            cls_attention_layers: Vec::new(),
            all_hidden_states: false,
            interpolate_pos_encoding: false,
        }
    }

    /// Also the CLS-row attention of `layer` (0-based encoder layer).
    pub fn with_cls_attention(mut self, layer: usize) -> Self {
        self.cls_attention_layers.push(layer);
        self
    }

    /// Keep every hidden state up to the deepest layer run.
    pub fn with_all_hidden_states(mut self) -> Self {
        self.all_hidden_states = true;
        self
    }

    /// Accept other input sizes, interpolating the position embeddings
    /// ([`Self::interpolate_pos_encoding`]).
    pub fn with_interpolate_pos_encoding(mut self) -> Self {
        self.interpolate_pos_encoding = true;
        self
    }
}

/// What [`ClipVisionModel::forward`] returns.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: Backend> {
    /// `hidden_states[select_layer]` `[B, T, D]`, in the weights' dtype.
    pub selected: Tensor<B, 3>,
    /// With `all_hidden_states`: `hidden_states[0..=n]` for the `n` layers run, each `[B, T, D]`;
    /// otherwise empty.
    pub hidden_states: Vec<Tensor<B, 3>>,
    /// `(layer, probabilities [B, H, T])` for each asked layer, in the order asked; f32.
    pub cls_attention: Vec<(usize, Tensor<B, 3>)>,
    /// Encoder layers actually run.
    pub layers_run: usize,
}

impl ClipVisionConfig {
    /// Builds a tower with random weights (use [`crate::load_clip_vision`] for a checkpoint).
    ///
    /// Weights are drawn lazily from the backend's generator (call `B::seed(device, seed)` first
    /// for reproducible built-in towers) and are trainable: call `.no_grad()` for a frozen tower,
    /// as the loader does, or run it on the inner (non-autodiff) backend.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipVisionModel<B> {
        ClipVisionModel::new(self, device)
    }
}

impl<B: Backend> ClipVisionModel<B> {
    pub(crate) fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let ln = || {
            LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        Self {
            embeddings: ClipVisionEmbeddings::new(config, device),
            pre_layrnorm: ln(),
            encoder: ClipEncoder {
                layers: (0..config.num_hidden_layers)
                    .map(|_| ClipEncoderLayer::new(config, device))
                    .collect(),
            },
            post_layernorm: ln(),
            image_size: config.image_size,
        }
    }

    /// Number of encoder layers `L`.
    pub fn num_layers(&self) -> usize {
        self.encoder.layers.len()
    }

    /// The float dtype the weights are stored and computed in.
    pub fn dtype(&self) -> burn::tensor::DType {
        self.embeddings.dtype()
    }

    /// Resolves a transformers `hidden_states` index (negative from the end) to `0..=L`.
    pub fn resolve_select_layer(&self, select_layer: i64) -> Result<usize> {
        let n = self.num_layers() as i64;
        let index = if select_layer < 0 {
            n + 1 + select_layer
        } else {
            select_layer
        };
        if (0..=n).contains(&index) {
            Ok(index as usize)
        } else {
            Err(VisionError::Request(format!(
                "select_layer {select_layer} is out of range for a tower with {n} layers \
                 (hidden_states has {} entries: use 0..={n} or -{}..=-1)",
                n + 1,
                n + 1
            )))
        }
    }

    /// Side of a square patch.
    pub fn patch_size(&self) -> usize {
        self.embeddings.patch_size()
    }

    /// Refuses an input shape the tower cannot run: wrong channel count, or a spatial size other
    /// than `image_size × image_size` unless `interpolate_pos_encoding`, in which case height and
    /// width must be positive multiples of the patch size.
    pub fn check_pixel_values(
        &self,
        dims: &[usize; 4],
        interpolate_pos_encoding: bool,
    ) -> Result<()> {
        let [_, c, h, w] = *dims;
        let expected_c = self.embeddings.patch_embedding.weight.dims()[1];
        if c != expected_c {
            return Err(VisionError::Request(format!(
                "pixel_values: expected {expected_c} channels ([B, {expected_c}, H, W]), found {dims:?}"
            )));
        }
        if interpolate_pos_encoding {
            let (p, g) = (self.patch_size(), self.embeddings.position_grid());
            return check_input_size(h, w, p, g)
                .map_err(|e| VisionError::Request(format!("pixel_values {dims:?}: {e}")));
        }
        if h != self.image_size || w != self.image_size {
            return Err(VisionError::Request(format!(
                "pixel_values: expected shape [B, {expected_c}, {s}, {s}], found {dims:?} \
                 (other sizes need interpolated position embeddings: \
                 VisionRequest::with_interpolate_pos_encoding)",
                s = self.image_size
            )));
        }
        Ok(())
    }

    /// Runs the tower as far as `request` needs.
    ///
    /// # Shapes
    /// `pixel_values [B, C, H, W]` (any float dtype; cast to the weights' dtype; `H = W =
    /// image_size` unless `request.interpolate_pos_encoding`) -> `selected [B, T, D]`,
    /// `hidden_states[i] [B, T, D]`, `cls_attention[j] [B, H, T]` with `T = (H/P)·(W/P) + 1`.
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 4>,
        request: &VisionRequest,
    ) -> Result<VisionOutput<B>> {
        self.check_pixel_values(&pixel_values.dims(), request.interpolate_pos_encoding)?;
        let select = self.resolve_select_layer(request.select_layer)?;
        let n = self.num_layers();
        if let Some(&bad) = request.cls_attention_layers.iter().find(|&&l| l >= n) {
            return Err(VisionError::Request(format!(
                "cls attention layer {bad} is out of range (0-based, the tower has {n} layers)"
            )));
        }
        let deepest_attention = request
            .cls_attention_layers
            .iter()
            .map(|&l| l + 1)
            .max()
            .unwrap_or(0);
        let run = select.max(deepest_attention);

        let mut x = self
            .pre_layrnorm
            .forward(self.embeddings.forward(pixel_values));
        let mut hidden_states = Vec::new();
        let mut selected = None;
        let mut cls_attention = Vec::new();
        for i in 0..=run {
            if request.all_hidden_states {
                hidden_states.push(x.clone());
            }
            if i == select {
                selected = Some(x.clone());
            }
            if i == run {
                break;
            }
            let want = request.cls_attention_layers.contains(&i);
            let (next, cls) = self.encoder.layers[i].forward(x, want);
            if let Some(cls) = cls {
                cls_attention.push((i, cls));
            }
            x = next;
        }
        // Return the rows in the order asked (duplicates share one computation).
        let cls_attention = request
            .cls_attention_layers
            .iter()
            .filter_map(|l| cls_attention.iter().find(|(i, _)| i == l).cloned())
            .collect();
        let selected =
            selected.ok_or_else(|| VisionError::Request("select layer was not reached".into()))?;
        Ok(VisionOutput {
            selected,
            hidden_states,
            cls_attention,
            layers_run: run,
        })
    }

    /// `hidden_states[select_layer]`, running no layer after it.
    ///
    /// # Shapes
    /// `[B, C, S, S] -> [B, T, D]`
    pub fn hidden_state(
        &self,
        pixel_values: Tensor<B, 4>,
        select_layer: i64,
    ) -> Result<Tensor<B, 3>> {
        Ok(self
            .forward(pixel_values, &VisionRequest::select(select_layer))?
            .selected)
    }

    /// LLaVA's image features: `hidden_states[select_layer]`, CLS dropped for [`FeatureSelect::Patch`].
    ///
    /// # Shapes
    /// `[B, C, S, S] -> [B, T-1, D]` (`Patch`) or `[B, T, D]` (`ClsPatch`)
    pub fn features(
        &self,
        pixel_values: Tensor<B, 4>,
        select_layer: i64,
        select: FeatureSelect,
    ) -> Result<Tensor<B, 3>> {
        let hidden = self.hidden_state(pixel_values, select_layer)?;
        Ok(select_features(hidden, select))
    }

    /// transformers' `pooler_output`: `post_layernorm` of the last layer's CLS token.
    ///
    /// # Shapes
    /// `[B, C, S, S] -> [B, D]`
    pub fn pooled(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 2>> {
        // Every layer but the last in full; the last at the CLS token alone.
        let before = self.hidden_state(pixel_values, -2)?;
        let [b, _, d] = before.dims();
        let cls = match self.encoder.layers.last() {
            Some(layer) => layer.forward_cls(before),
            None => before.slice([0..b, 0..1, 0..d]),
        };
        Ok(self.post_layernorm.forward(cls.reshape([b, d])))
    }
}

/// Drops the CLS token for [`FeatureSelect::Patch`].
///
/// # Shapes
/// `[B, T, D] -> [B, T-1, D]` (`Patch`) or unchanged (`ClsPatch`)
pub fn select_features<B: Backend>(hidden: Tensor<B, 3>, select: FeatureSelect) -> Tensor<B, 3> {
    match select {
        FeatureSelect::Patch => {
            let [b, t, d] = hidden.dims();
            hidden.slice([0..b, 1..t, 0..d])
        }
        FeatureSelect::ClsPatch => hidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type B = Flex;

    #[test]
    fn tiny_tower_shapes_probabilities_and_early_stop() {
        let device = Default::default();
        let config = ClipVisionConfig::tiny();
        let model = config.init::<B>(&device);
        let x: Tensor<B, 4> =
            Tensor::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let out = model
            .forward(
                x.clone(),
                &VisionRequest::select(-2)
                    .with_cls_attention(2)
                    .with_all_hidden_states(),
            )
            .unwrap();
        assert_eq!(out.selected.dims(), [2, 65, 64]);
        assert_eq!(out.layers_run, 3, "hidden_states[-2] of 4 layers needs 3");
        assert_eq!(out.hidden_states.len(), 4);
        let (layer, probs) = &out.cls_attention[0];
        assert_eq!(*layer, 2);
        assert_eq!(probs.dims(), [2, 4, 65]);
        let sums = probs
            .clone()
            .sum_dim(2)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        // a CLS row past the select layer extends the run but not the selected state
        let out2 = model
            .forward(x.clone(), &VisionRequest::select(1).with_cls_attention(3))
            .unwrap();
        assert_eq!(out2.layers_run, 4);
        let h1 = model.hidden_state(x.clone(), 1).unwrap();
        let d: f32 = (out2.selected - h1).abs().max().into_scalar();
        assert_eq!(d, 0.0);
        assert_eq!(
            model
                .features(x.clone(), -2, FeatureSelect::Patch)
                .unwrap()
                .dims(),
            [2, 64, 64]
        );
        assert_eq!(
            model
                .features(x.clone(), -2, FeatureSelect::ClsPatch)
                .unwrap()
                .dims(),
            [2, 65, 64]
        );
        assert_eq!(model.pooled(x).unwrap().dims(), [2, 64]);
    }

    /// A last layer run at the CLS token alone gives the full layer's CLS row, and the same
    /// gradients to every weight and to its input.
    #[test]
    fn the_cls_only_layer_equals_the_full_layer_at_cls() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let model = ClipVisionConfig::tiny().init::<A>(&device);
        let layer = &model.encoder.layers[3];
        let x = Tensor::<B, 3>::random([2, 65, 64], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<A, 3>::random([2, 1, 64], Distribution::Normal(0.0, 1.0), &device);
        let run = |cls_only: bool| {
            let x = Tensor::<A, 3>::from_inner(x.clone()).require_grad();
            let out = if cls_only { layer.forward_cls(x.clone()) } else { layer.forward(x.clone(), false).0.slice([0..2, 0..1, 0..64]) };
            let grads = (out.clone() * w.clone()).sum().backward();
            let g = [
                x.grad(&grads).unwrap(),
                layer.self_attn.q_proj.weight.grad(&grads).unwrap().reshape([1, 64, 64]),
                layer.self_attn.v_proj.weight.grad(&grads).unwrap().reshape([1, 64, 64]),
                layer.mlp.fc1.weight.grad(&grads).unwrap().reshape([1, 64, 256]),
            ];
            (out.inner(), g)
        };
        let ((a, ga), (b, gb)) = (run(true), run(false));
        let worst = |a: Tensor<B, 3>, b: Tensor<B, 3>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(worst(a, b) < 1e-5);
        for (x, y) in ga.into_iter().zip(gb) {
            let scale: f32 = y.clone().abs().max().into_scalar();
            let d = worst(x, y);
            assert!(d < 1e-5 * scale.max(1.0), "gradient differs by {d} (largest {scale})");
        }
        // `pooled` takes it: the same as the full tower's last hidden state at CLS.
        let px = Tensor::<B, 4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let plain = burn::module::AutodiffModule::valid(&model);
        let last = plain.hidden_state(px.clone(), -1).unwrap();
        let want = plain.post_layernorm.forward(last.slice([0..2, 0..1, 0..64]).reshape([2, 64]));
        let d: f32 = (plain.pooled(px).unwrap() - want).abs().max().into_scalar();
        assert!(d < 1e-5, "pooled differs by {d}");
    }

    #[test]
    fn other_input_sizes_need_interpolation_and_a_multiple_of_the_patch() {
        let device = Default::default();
        let model = ClipVisionConfig::tiny().init::<B>(&device); // 32 px, patch 4
        let big: Tensor<B, 4> =
            Tensor::random([1, 3, 64, 48], Distribution::Normal(0.0, 1.0), &device);
        let e = model
            .forward(big.clone(), &VisionRequest::select(-1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[B, 3, 32, 32]") && e.contains("interpolate"),
            "{e}"
        );
        let out = model
            .forward(
                big,
                &VisionRequest::select(-1).with_interpolate_pos_encoding(),
            )
            .unwrap();
        assert_eq!(out.selected.dims(), [1, 16 * 12 + 1, 64]);
        let odd: Tensor<B, 4> = Tensor::zeros([1, 3, 64, 50], &device);
        let e = model
            .forward(
                odd,
                &VisionRequest::select(-1).with_interpolate_pos_encoding(),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("64x50") && e.contains("patch size 4"), "{e}");
        // at the config's own size, interpolation changes nothing (transformers returns early)
        let x: Tensor<B, 4> =
            Tensor::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let a = model.hidden_state(x.clone(), -1).unwrap();
        let b = model
            .forward(
                x,
                &VisionRequest::select(-1).with_interpolate_pos_encoding(),
            )
            .unwrap()
            .selected;
        let d: f32 = (a - b).abs().max().into_scalar();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn runs_on_autodiff_and_frozen_tower_is_differentiable_wrt_input() {
        type A = Autodiff<Flex>;
        let device = Default::default();
        let model = ClipVisionConfig::new(16, 8, 16, 32, 2, 2)
            .init::<A>(&device)
            .no_grad();
        let x: Tensor<A, 4> =
            Tensor::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let y = model.hidden_state(x.clone(), -1).unwrap().sum();
        let grads = y.backward();
        assert!(x.grad(&grads).is_some());
        assert!(model
            .embeddings
            .patch_embedding
            .weight
            .val()
            .grad(&grads)
            .is_none());
    }
}
