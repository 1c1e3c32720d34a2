//! One pre-norm decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::prelude::*;

use crate::attention::{Attention, AttentionConfig, AttnPlan, CacheMode};
use crate::config::LlamaConfig;
use crate::mlp::{Mlp, MlpConfig};
use crate::norm::{RmsNorm, RmsNormConfig};

/// `model.layers.{i}`; field names are the checkpoint's.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: Attention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// A randomly initialised layer of `config`'s geometry.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let norm = RmsNormConfig::new(config.hidden_size, config.rms_norm_eps);
        Self {
            self_attn: AttentionConfig::new(
                config.hidden_size,
                config.num_attention_heads,
                config.num_key_value_heads,
                config.head_dim,
                config.qkv_bias,
                config.o_bias,
            )
            .init(device),
            mlp: MlpConfig::new(config.hidden_size, config.intermediate_size, config.mlp_bias).init(device),
            input_layernorm: norm.init(device),
            post_attention_layernorm: norm.init(device),
        }
    }

    /// # Shapes
    /// `x [batch, len, hidden]`, `cos`/`sin [batch, 1, len, head_dim]` ->
    /// (`[batch, len, hidden]`, head-mean rows `[batch, rows, len]` if the plan asks)
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        cos: &Tensor<B, 4>,
        sin: &Tensor<B, 4>,
        plan: &AttnPlan<B>,
        cache: CacheMode<'_, B>,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let (attn, rows) = self
            .self_attn
            .forward(self.input_layernorm.forward(x.clone()), cos, sin, plan, cache);
        let x = x + attn;
        let out = x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x));
        (out, rows)
    }
}
