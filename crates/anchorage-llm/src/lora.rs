//! LoRA adapters (Hu et al. 2021) beside the decoder's linear projections, as PEFT's `LoraLayer`
//! adds them (huggingface/peft `src/peft/tuners/lora/layer.py`): `y = W x + (alpha / r) · B A x`,
//! with A drawn as PEFT's default (Kaiming-uniform, a = √5, i.e. U(±1/√in)) and B zero, so a fresh
//! adapter leaves the model's output unchanged. The base weights stay frozen; only A and B train.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

use crate::error::LlmError;
use crate::model::Llm;

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
    fn new(d_in: usize, d_out: usize, spec: &LoraSpec, device: &B::Device) -> Self {
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
        None => linear.forward(x),
        Some(adapter) => linear.forward(x.clone()) + adapter.forward(x),
    }
}

fn new_adapter<B: Backend>(linear: &Linear<B>, spec: &LoraSpec, device: &B::Device) -> Option<LoraAdapter<B>> {
    // burn's Linear weight is [in, out].
    let [d_in, d_out] = linear.weight.dims();
    Some(LoraAdapter::new(d_in, d_out, spec, device))
}

impl<B: Backend> Llm<B> {
    /// Adds fresh adapters to `spec.targets` in every decoder layer.
    pub fn with_lora(mut self, spec: &LoraSpec, device: &B::Device) -> Result<Self, LlmError> {
        if spec.rank == 0 {
            return Err(LlmError::Lora("rank must be at least 1".into()));
        }
        for t in &spec.targets {
            if !LORA_TARGETS.contains(&t.as_str()) {
                return Err(LlmError::Lora(format!("unknown target module `{t}`; allowed: {}", LORA_TARGETS.join(", "))));
            }
        }
        let wants = |name: &str| spec.targets.iter().any(|t| t == name);
        for layer in &mut self.model.layers {
            let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
            if wants("q_proj") { a.q_lora = new_adapter(&a.q_proj, spec, device); }
            if wants("k_proj") { a.k_lora = new_adapter(&a.k_proj, spec, device); }
            if wants("v_proj") { a.v_lora = new_adapter(&a.v_proj, spec, device); }
            if wants("o_proj") { a.o_lora = new_adapter(&a.o_proj, spec, device); }
            if wants("gate_proj") { m.gate_lora = new_adapter(&m.gate_proj, spec, device); }
            if wants("up_proj") { m.up_lora = new_adapter(&m.up_proj, spec, device); }
            if wants("down_proj") { m.down_lora = new_adapter(&m.down_proj, spec, device); }
        }
        Ok(self)
    }

    /// Every adapter slot in a fixed order (per layer: q, k, v, o, gate, up, down), `None` where a
    /// projection has no adapter: what a LoRA step checkpoint saves instead of the whole LLM.
    pub fn lora_adapters(&self) -> Vec<Option<LoraAdapter<B>>> {
        let mut out = Vec::with_capacity(self.model.layers.len() * LORA_TARGETS.len());
        for layer in &self.model.layers {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            out.extend([&a.q_lora, &a.k_lora, &a.v_lora, &a.o_lora, &m.gate_lora, &m.up_lora, &m.down_lora].map(Clone::clone));
        }
        out
    }

    /// Puts back adapters taken with [`Llm::lora_adapters`] (same order and count).
    pub fn with_lora_adapters(mut self, adapters: Vec<Option<LoraAdapter<B>>>) -> Result<Self, LlmError> {
        let expected = self.model.layers.len() * LORA_TARGETS.len();
        if adapters.len() != expected {
            return Err(LlmError::Lora(format!("{} adapter slots given, the model has {expected}", adapters.len())));
        }
        let mut it = adapters.into_iter();
        for layer in &mut self.model.layers {
            let (a, m) = (&mut layer.self_attn, &mut layer.mlp);
            for slot in [&mut a.q_lora, &mut a.k_lora, &mut a.v_lora, &mut a.o_lora, &mut m.gate_lora, &mut m.up_lora, &mut m.down_lora] {
                *slot = it.next().flatten();
            }
        }
        Ok(self)
    }

    /// The adapters under PEFT's names for a `LlamaForCausalLM` base
    /// (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` `[r, in]`,
    /// `...lora_B.weight` `[out, r]`, PyTorch layout), as f32.
    pub fn lora_tensors(&self) -> Vec<(String, TensorData)> {
        let mut out = Vec::new();
        let mut push = |prefix: String, lora: &Option<LoraAdapter<B>>| {
            if let Some(l) = lora {
                let t = |p: &Param<Tensor<B, 2>>| p.val().transpose().cast(burn::tensor::FloatDType::F32).into_data();
                out.push((format!("{prefix}.lora_A.weight"), t(&l.lora_a)));
                out.push((format!("{prefix}.lora_B.weight"), t(&l.lora_b)));
            }
        };
        for (i, layer) in self.model.layers.iter().enumerate() {
            let base = format!("base_model.model.model.layers.{i}");
            let (a, m) = (&layer.self_attn, &layer.mlp);
            push(format!("{base}.self_attn.q_proj"), &a.q_lora);
            push(format!("{base}.self_attn.k_proj"), &a.k_lora);
            push(format!("{base}.self_attn.v_proj"), &a.v_lora);
            push(format!("{base}.self_attn.o_proj"), &a.o_lora);
            push(format!("{base}.mlp.gate_proj"), &m.gate_lora);
            push(format!("{base}.mlp.up_proj"), &m.up_lora);
            push(format!("{base}.mlp.down_proj"), &m.down_lora);
        }
        out
    }
}
