//! A pre-LN encoder layer and its MLP (transformers `CLIPEncoderLayer`, `CLIPMLP`,
//! huggingface/transformers `src/transformers/models/clip/modeling_clip.py`).

use anchorage_kernels::activation::reference::{gelu_reference, quick_gelu_reference};
use anchorage_kernels::activation::{gelu, quick_gelu};
use anchorage_kernels::linear;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::gelu_approximate;

use crate::attention::ClipAttention;
use crate::config::{ClipVisionConfig, HiddenAct};

/// `mlp.fc1 -> act -> mlp.fc2`.
#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    /// The activation between the two projections.
    #[module(skip)]
    pub act: HiddenAct,
}

impl<B: Backend> ClipMlp<B> {
    pub(crate) fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        Self {
            fc1: LinearConfig::new(config.hidden_size, config.intermediate_size).init(device),
            fc2: LinearConfig::new(config.intermediate_size, config.hidden_size).init(device),
            act: config.hidden_act,
        }
    }

    /// # Shapes
    /// `[B, T, D] -> [B, T, D]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = linear::forward(&self.fc1, x);
        let x = match self.act {
            // x * sigmoid(1.702 x) (transformers activations.py QuickGELUActivation)
            // One host pass with its own backward on the CPU backend, burn's ops elsewhere.
            HiddenAct::QuickGelu => quick_gelu(&x).unwrap_or_else(|| quick_gelu_reference(x)),
            HiddenAct::Gelu => gelu(&x).unwrap_or_else(|| gelu_reference(x)),
            HiddenAct::GeluTanh => gelu_approximate(x),
        };
        linear::forward(&self.fc2, x)
    }
}

/// `encoder.layers.{i}`: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    pub self_attn: ClipAttention<B>,
    pub layer_norm1: LayerNorm<B>,
    pub mlp: ClipMlp<B>,
    pub layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    pub(crate) fn new(config: &ClipVisionConfig, device: &B::Device) -> Self {
        let ln = || {
            LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        Self {
            self_attn: ClipAttention::new(config, device),
            layer_norm1: ln(),
            mlp: ClipMlp::new(config, device),
            layer_norm2: ln(),
        }
    }

    /// One layer; `cls_row` asks for the CLS-row attention probabilities of this layer.
    ///
    /// # Shapes
    /// `x [B, T, D] -> ([B, T, D], Some([B, H, T]) if cls_row)`
    pub fn forward(&self, x: Tensor<B, 3>, cls_row: bool) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let (attn, cls) = self
            .self_attn
            .forward(self.layer_norm1.forward(x.clone()), cls_row);
        let x = x + attn;
        let x = x.clone() + self.mlp.forward(self.layer_norm2.forward(x));
        (x, cls)
    }

    /// The layer's output at the CLS token alone: what [`Self::forward`] gives at row 0, with the
    /// CLS query attending to every token's key and value but no other query, output projection
    /// or MLP computed. A tower whose last layer feeds only the pooled output (CLIP's
    /// `pooler_output`, a probe on it) needs no more of that layer.
    ///
    /// # Shapes
    /// `x [B, T, D] -> [B, 1, D]`
    pub fn forward_cls(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, _, d] = x.dims();
        let attn = self.self_attn.forward_cls(self.layer_norm1.forward(x.clone()));
        let x = x.slice([0..b, 0..1, 0..d]) + attn;
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}
