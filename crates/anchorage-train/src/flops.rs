//! The FLOPs model of one stage-1 training step with frozen towers, for MFU in `train bench step`
//! (the same formula as `benches/llava_train_step.py`, the transformers side):
//!
//! - vision forward up to the select layer: per layer `2·(4d² + 2d·m)·T + 4·T²·d` (T = patches + CLS);
//! - connector forward and backward: `3 · 2 · params · tokens in`;
//! - LLM forward plus its backward to the inputs (no weight gradients, so about one more forward):
//!   `2 · (layers · (2·(2d² + 2d·kv + 3d·m)·S + 4·S²·d) + 2·d·vocab·S)` (S = sequence length).
//!
//! Useful work only: transformers runs the whole vision tower and takes layer -2; this counts the
//! layers up to the select layer for both, so MFU compares the same work.

/// Sizes of one training sample's step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepShape {
    /// Vision tower: tokens per image (patches + CLS), width, MLP width, layers that run.
    pub vision_tokens: usize,
    pub vision_width: usize,
    pub vision_mlp: usize,
    pub vision_layers: usize,
    /// Connector parameters and the tokens it reads per image.
    pub connector_params: usize,
    pub connector_tokens: usize,
    /// LLM: width, key/value width (kv heads × head dim), MLP width, layers, vocabulary, and the
    /// sequence length of the sample after splicing.
    pub llm_width: usize,
    pub llm_kv_width: usize,
    pub llm_mlp: usize,
    pub llm_layers: usize,
    pub vocab: usize,
    pub seq_len: usize,
}

impl StepShape {
    /// Floating-point operations of one sample's training step.
    pub fn flops_per_sample(&self) -> f64 {
        let f = |x: usize| x as f64;
        let (t, d, m) = (f(self.vision_tokens), f(self.vision_width), f(self.vision_mlp));
        let vision = f(self.vision_layers) * (2.0 * (4.0 * d * d + 2.0 * d * m) * t + 4.0 * t * t * d);
        let connector = 3.0 * 2.0 * f(self.connector_params) * f(self.connector_tokens);
        let (s, d, kv, m) = (f(self.seq_len), f(self.llm_width), f(self.llm_kv_width), f(self.llm_mlp));
        let layer = 2.0 * (2.0 * d * d + 2.0 * d * kv + 3.0 * d * m) * s + 4.0 * s * s * d;
        let llm = f(self.llm_layers) * layer + 2.0 * d * f(self.vocab) * s;
        vision + connector + 2.0 * llm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_7b_mlp_step_is_dominated_by_the_llm() {
        // CLIP-L/336 (23 of 24 layers) + 2-layer MLP + Llama-2-7B at 1 + 576 + 64 tokens.
        let shape = StepShape {
            vision_tokens: 577,
            vision_width: 1024,
            vision_mlp: 4096,
            vision_layers: 23,
            connector_params: 1024 * 4096 + 4096 + 4096 * 4096 + 4096,
            connector_tokens: 576,
            llm_width: 4096,
            llm_kv_width: 4096,
            llm_mlp: 11008,
            llm_layers: 32,
            vocab: 32000,
            seq_len: 641,
        };
        let total = shape.flops_per_sample();
        // About 4 forward passes' worth of a 6.7B decoder: 2 (fwd+bwd) × 2 × 6.7e9 × 641 ≈ 1.7e13.
        assert!((1.6e13..2.0e13).contains(&total), "{total:e}");
        let no_llm = StepShape { llm_layers: 0, vocab: 0, ..shape.clone() }.flops_per_sample();
        assert!(no_llm < 0.15 * total, "{no_llm:e} of {total:e}");
    }
}
