//! The SwiGLU MLP of Llama/Qwen2: `down_proj(silu(gate_proj(x)) * up_proj(x))`, the activation
//! fused on the CPU backend (`anchorage_kernels::activation`).

use anchorage_kernels::activation::reference::swiglu_reference;
use anchorage_kernels::activation::swiglu;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::lora_adapter::{project, LoraAdapter};

/// Configuration of an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Model width.
    pub hidden_size: usize,
    /// Inner width.
    pub intermediate_size: usize,
    /// Biases on the three projections (`mlp_bias`).
    pub bias: bool,
}

/// Gated MLP; field names are the checkpoint's (`mlp.gate_proj`, ...).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
    /// LoRA adapters (see `lora_adapter.rs`); `None` unless `Llm::with_lora` added them.
    pub gate_lora: Option<LoraAdapter<B>>,
    pub up_lora: Option<LoraAdapter<B>>,
    pub down_lora: Option<LoraAdapter<B>>,
}

impl MlpConfig {
    /// Randomly initialised MLP (weights are replaced when a checkpoint loads).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let up = LinearConfig::new(self.hidden_size, self.intermediate_size).with_bias(self.bias);
        let down = LinearConfig::new(self.intermediate_size, self.hidden_size).with_bias(self.bias);
        Mlp {
            gate_proj: up.init(device),
            up_proj: up.init(device),
            down_proj: down.init(device),
            gate_lora: None,
            up_lora: None,
            down_lora: None,
        }
    }
}

impl<B: Backend> Mlp<B> {
    /// # Shapes
    /// `[batch, len, hidden] -> [batch, len, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = project(&self.gate_proj, &self.gate_lora, x.clone());
        let up = project(&self.up_proj, &self.up_lora, x);
        // One host pass with its own backward on the CPU backend, burn's ops elsewhere.
        let act = swiglu(&gate, &up).unwrap_or_else(|| swiglu_reference(gate, up));
        project(&self.down_proj, &self.down_lora, act)
    }
}
