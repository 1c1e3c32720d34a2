//! LoRA adapters (Hu et al. 2021) beside the decoder's linear projections, as PEFT's `LoraLayer`
//! adds them (huggingface/peft `src/peft/tuners/lora/layer.py`): `y = W x + (alpha / r) · B A x`,
//! with A drawn as PEFT's default (Kaiming-uniform, a = √5, i.e. U(±1/√in)) and B zero, so a fresh
//! adapter leaves the model's output unchanged. The base weights stay frozen; only A and B train.
//!
//! This file holds the adapter and the projection the attention and MLP blocks call; adding,
//! taking and exporting the adapters of a whole model is in `lora.rs`.

use anchorage_kernels::linear as fused_linear;
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::Distribution;

/// Module names inside a decoder layer that may carry an adapter.
pub const LORA_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Which projections get adapters, and their rank and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<String>,
}

/// One adapter: `x ↦ (alpha / r) · (x A) B`.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `[in, rank]`
    pub lora_a: Param<Tensor<B, 2>>,
    /// `[rank, out]`
    pub lora_b: Param<Tensor<B, 2>>,
    pub scale: f64,
}

impl<B: Backend> LoraAdapter<B> {
    pub(crate) fn new(d_in: usize, d_out: usize, spec: &LoraSpec, device: &B::Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            lora_a: Param::from_tensor(Tensor::random([d_in, spec.rank], Distribution::Uniform(-bound, bound), device)),
            lora_b: Param::from_tensor(Tensor::zeros([spec.rank, d_out], device)),
            scale: spec.alpha / spec.rank as f64,
        }
    }

    /// # Shapes
    /// `[batch, len, in] -> [batch, len, out]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        let out = self.lora_b.dims()[1];
        let a = self.lora_a.val().cast(x.dtype());
        let bb = self.lora_b.val().cast(x.dtype());
        x.reshape([b * l, d]).matmul(a).matmul(bb).mul_scalar(self.scale).reshape([b, l, out])
    }
}

/// `linear(x)`, plus the adapter's update when there is one.
pub(crate) fn project<B: Backend>(linear: &Linear<B>, lora: &Option<LoraAdapter<B>>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    match lora {
        None => fused_linear::forward(linear, x),
        Some(adapter) => fused_linear::forward(linear, x.clone()) + adapter.forward(x),
    }
}

