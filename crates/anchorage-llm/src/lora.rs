//! LoRA on a whole model: adding fresh adapters to chosen projections of every decoder layer
//! (PEFT's `LoraModel` injection, huggingface/peft `src/peft/tuners/lora/model.py`), taking and
//! restoring them for step checkpoints, and exporting them under PEFT's tensor names. The adapter
//! itself is in `lora_adapter.rs`.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::TensorData;

use crate::error::LlmError;
use crate::lora_adapter::{LoraAdapter, LoraSpec, LORA_TARGETS};
use crate::model::Llm;

/// `linear` with `adapter` folded in: `W' = W + (alpha / r) · A B` in burn's `[in, out]` layout
/// (PyTorch's `W + (alpha / r) · B A` on `[out, in]`, PEFT's `merge_and_unload`), computed in
/// f32 and stored in the weight's own dtype.
fn merged<B: Backend>(mut linear: Linear<B>, adapter: Option<LoraAdapter<B>>) -> Linear<B> {
    let Some(l) = adapter else { return linear };
    let dtype = linear.weight.val().dtype();
    let f32 = burn::tensor::FloatDType::F32;
    let delta = l.lora_a.val().cast(f32).matmul(l.lora_b.val().cast(f32)).mul_scalar(l.scale);
    let weight = (linear.weight.val().cast(f32) + delta).cast(dtype);
    linear.weight = Param::from_tensor(weight);
    linear
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

    /// The same model with every adapter folded into its projection and removed (PEFT's
    /// `merge_and_unload`): its outputs equal the adapted model's, up to rounding, and its weights
    /// are a plain base checkpoint. A model without adapters comes back unchanged.
    pub fn merge_lora(mut self) -> Self {
        for layer in &mut self.model.layers {
            let a = &mut layer.self_attn;
            a.q_proj = merged(a.q_proj.clone(), a.q_lora.take());
            a.k_proj = merged(a.k_proj.clone(), a.k_lora.take());
            a.v_proj = merged(a.v_proj.clone(), a.v_lora.take());
            a.o_proj = merged(a.o_proj.clone(), a.o_lora.take());
            let m = &mut layer.mlp;
            m.gate_proj = merged(m.gate_proj.clone(), m.gate_lora.take());
            m.up_proj = merged(m.up_proj.clone(), m.up_lora.take());
            m.down_proj = merged(m.down_proj.clone(), m.down_lora.take());
        }
        self
    }

    /// Whether any projection carries an adapter.
    pub fn has_lora(&self) -> bool {
        self.lora_adapters().iter().any(Option::is_some)
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
