//! AcFormer's Anchor Former: anchors chosen from the select layer's CLS attention are the queries
//! of a Perceiver Resampler over all vision tokens (CLS included), then Linear-GELU-Linear.
//!
//! Follows liuhaogeng/Anchor-Former `clip_encoder.py` (l.42–58, anchor selection; here the
//! batched op of anchorage-kernels), `builder.py` (l.86–248, 280–311: `Sequential([0]
//! PerceiverResampler with dynamic_query, [1] Linear, [2] GELU, [3] Linear)`) and `llava_arch.py`
//! (l.140–144). The resampler keeps its unused `latents [144, D]` so that weight files match.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::error::ConnectorError;
use crate::mlp::{Mlp, MlpActivation, MlpConfig};
use crate::perceiver::{Perceiver, PerceiverConfig};
use crate::weights::{join, WeightIo};

/// Anchor Former sizes.
#[derive(Config, Debug, PartialEq)]
pub struct AnchorFormerConfig {
    /// Resampler over the vision tokens; keys/values are the media only (AcFormer).
    pub perceiver: PerceiverConfig,
    /// Output width (LLM hidden size).
    pub d_output: usize,
    /// Anchors including CLS: `heads × per-head budget + 1` (145, 257).
    #[config(default = 145)]
    pub anchors: usize,
    #[config(default = 2)]
    pub projector_depth: usize,
}

/// See [`AnchorFormerConfig`].
#[derive(Module, Debug)]
pub struct AnchorFormer<B: Backend> {
    pub perceiver: Perceiver<B>,
    pub projector: Mlp<B>,
    pub anchors: usize,
}

impl AnchorFormerConfig {
    /// CLIP ViT-L/14-336 (1024) into a 7B LLM (4096) with `anchors` anchors.
    fn preset(anchors: usize) -> Self {
        Self::new(PerceiverConfig::new(1024).with_kv_includes_latents(false), 4096).with_anchors(anchors)
    }

    /// 16 heads × 9 + CLS (`num_count = 144`).
    pub fn anchors_145() -> Self {
        Self::preset(145)
    }

    /// 16 heads × 16 + CLS (`num_count = 256`, the published code).
    pub fn anchors_257() -> Self {
        Self::preset(257)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> AnchorFormer<B> {
        AnchorFormer {
            perceiver: self.perceiver.clone().with_kv_includes_latents(false).init(device),
            projector: MlpConfig::new(self.perceiver.d_model, self.d_output)
                .with_depth(self.projector_depth)
                .with_activation(MlpActivation::Gelu)
                .init(device),
            anchors: self.anchors,
        }
    }
}

impl<B: Backend> AnchorFormer<B> {
    /// # Shapes
    /// `features [batch, tokens, d_vision]` (CLS at token 0), `cls_attention [batch, heads, tokens]`
    /// `-> [batch, anchors, d_output]`
    pub fn forward(&self, features: Tensor<B, 3>, cls_attention: Tensor<B, 3>) -> crate::Result<Tensor<B, 3>> {
        let [b, t, _] = features.dims();
        let [ab, heads, at] = cls_attention.dims();
        if (ab, at) != (b, t) || heads == 0 {
            return Err(ConnectorError::InputShape {
                what: "cls_attention".into(),
                expected: format!("[{b}, heads, {t}] to match features {:?}", features.dims()),
                found: cls_attention.dims().to_vec(),
            });
        }
        let indices = anchorage_kernels::select_anchors(cls_attention, self.anchors - 1)?;
        let queries = anchorage_kernels::gather_tokens(features.clone(), indices)?;
        let x = self.perceiver.forward(features, Some(queries))?;
        Ok(self.projector.forward(x))
    }

    /// Canonical keys: `0.<perceiver>` (with the unused `0.latents`), projector at `1`, `3`.
    pub fn visit_weights<I: WeightIo<B>>(&mut self, prefix: &str, io: &mut I) -> crate::Result<()> {
        self.perceiver.visit_weights_with_unused_latents(&join(prefix, "0"), io)?;
        self.projector.visit_weights(prefix, 1, io)
    }
}
