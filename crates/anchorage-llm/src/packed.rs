//! Packed sequences: several samples back to back in one row, each attending only to itself with
//! its positions restarting at 0, instead of one right-padded row per sample. Training on short
//! samples of uneven length (the demo LLM's drills, captions and conversations) then spends no
//! work on padding, and a step's rows can be cut to equal token counts.
//!
//! The plain decoder only: no hooks, no KV cache. On burn-flex (f32) the attention is the fused
//! host kernel with [`Visibility::Packed`]; elsewhere it is burn's attention with a
//! block-diagonal causal mask. Both give each sequence what [`Llm::forward_embeds`] gives it
//! alone, up to float rounding.

use anchorage_kernels::attention::{runs_fused, Visibility};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

use crate::attention::{AttnPlan, CacheMode, KeyMask};
use crate::error::LlmError;
use crate::model::Llm;

impl<B: Backend> Llm<B> {
    /// The final (normed) hidden states of packed sequences.
    ///
    /// # Shapes
    /// `embeds [rows, len, hidden]`, row `r` holding sequences of `segments[r]` tokens back to
    /// back from its start (the rest padding) -> `[rows, len, hidden]` (padding rows are
    /// meaningless).
    pub fn forward_packed(&self, embeds: Tensor<B, 3>, segments: &[Vec<usize>]) -> Result<Tensor<B, 3>, LlmError> {
        let [rows, len, width] = embeds.dims();
        let longest = segments.iter().map(|row| row.iter().sum::<usize>()).max().unwrap_or(0);
        if width != self.config.hidden_size || segments.len() != rows || longest > len {
            return Err(LlmError::InputShape {
                what: "packed embeds / segments".into(),
                expected: format!(
                    "[{}, >= {longest}, {}] for {} rows of segments",
                    segments.len(),
                    self.config.hidden_size,
                    segments.len()
                ),
                found: vec![rows, len, width],
            });
        }
        let device = embeds.device();
        let dtype = embeds.dtype();
        let (cos, sin) = self.rope.cos_sin(packed_positions::<B>(segments, len, &device), dtype);
        let fused = runs_fused::<B>() && dtype == DType::F32;
        let plan = packed_plan::<B>(segments, self.config.num_attention_heads, len, !fused, &device);
        let mut hidden = embeds;
        for layer in &self.model.layers {
            hidden = layer.forward(hidden, &cos, &sin, &plan, CacheMode::None).0;
        }
        Ok(self.model.norm.forward(hidden))
    }
}

/// Each token's position in its own sequence `[rows, len]` (0 for padding).
fn packed_positions<B: Backend>(segments: &[Vec<usize>], len: usize, device: &B::Device) -> Tensor<B, 2, Int> {
    let mut positions = Vec::with_capacity(segments.len() * len);
    for row in segments {
        let start = positions.len();
        for &n in row {
            positions.extend(0..n as i64);
        }
        positions.resize(start + len, 0);
    }
    Tensor::from_data(TensorData::new(positions, [segments.len(), len]), device)
}

/// The layers' plan: the segments for the fused attention, and with `with_mask` the block-diagonal
/// causal mask burn's attention needs (true = masked; a padding query sees nothing).
pub(crate) fn packed_plan<B: Backend>(segments: &[Vec<usize>], heads: usize, len: usize, with_mask: bool, device: &B::Device) -> AttnPlan<B> {
    let visibility = Visibility::Packed { segments: segments.to_vec() };
    let mut plan = AttnPlan::causal();
    plan.packed = Some(segments.to_vec());
    if with_mask {
        let rows = segments.len();
        let masked: Vec<bool> = (0..rows)
            .flat_map(|b| {
                let visibility = &visibility;
                (0..len).flat_map(move |i| (0..len).map(move |j| !visibility.sees(b, i, j, len)))
            })
            .collect();
        let mask: Tensor<B, 3, Bool> = Tensor::from_data(TensorData::new(masked, [rows, len, len]), device);
        plan.mask = KeyMask::Dense(mask.unsqueeze_dim::<4>(1).expand([rows, heads, len, len]));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;
    use crate::forward::LlmInput;
    use crate::hooks::NoHooks;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    type B = Flex;

    fn llm() -> Llm<B> {
        let device = Default::default();
        B::seed(&device, 7);
        let config = LlamaConfig { num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, hidden_size: 32, ..LlamaConfig::tiny() };
        config.init::<B>(&device)
    }

    /// Each packed sequence's hidden states equal those of the sequence run alone.
    fn check_each_sequence_alone(llm: &Llm<B>, packed: Tensor<B, 3>, segments: &[Vec<usize>], tolerance: f32) {
        let width = packed.dims()[2];
        for (r, row) in segments.iter().enumerate() {
            let mut start = 0;
            for &n in row {
                if n == 0 {
                    continue;
                }
                let alone = llm.embed_inputs_for_test(r, start, n);
                let want = llm.forward_embeds(LlmInput::plain(alone), &mut NoHooks).unwrap().hidden;
                let got = packed.clone().slice([r..r + 1, start..start + n, 0..width]);
                let diff: f32 = (got - want).abs().max().into_scalar();
                assert!(diff < tolerance, "row {r}, sequence at {start} ({n} tokens): worst difference {diff}");
                start += n;
            }
        }
    }

    impl Llm<B> {
        /// Embeddings of the test's token ids: token `t` of row `r` is id `(7 r + 3 t) % 97 + 3`.
        fn embed_inputs_for_test(&self, r: usize, start: usize, n: usize) -> Tensor<B, 3> {
            let ids: Vec<i64> = (start..start + n).map(|t| ((7 * r + 3 * t) % 97 + 3) as i64).collect();
            self.embed(Tensor::from_data(TensorData::new(ids, [1, n]), &Default::default()))
        }
    }

    fn packed_embeds(llm: &Llm<B>, rows: usize, len: usize) -> Tensor<B, 3> {
        Tensor::cat((0..rows).map(|r| llm.embed_inputs_for_test(r, 0, len)).collect(), 0)
    }

    #[test]
    fn packed_sequences_equal_each_sequence_alone() {
        let llm = llm();
        let segments = vec![vec![3, 6, 1], vec![5, 0, 2]];
        let out = llm.forward_packed(packed_embeds(&llm, 2, 11), &segments).unwrap();
        check_each_sequence_alone(&llm, out, &segments, 1e-5);
    }

    /// The tensor-op path (burn's attention with the block-diagonal mask) gives the same.
    #[test]
    fn the_masked_tensor_op_path_equals_the_fused_one() {
        let llm = llm();
        let device = Default::default();
        let segments = vec![vec![4, 3], vec![2, 2, 2]];
        let x = Tensor::<B, 3>::random([2, 8, 32], Distribution::Normal(0.0, 1.0), &device);
        let (cos, sin) = llm.rope.cos_sin(packed_positions::<B>(&segments, 8, &device), DType::F32);
        let layer = &llm.model.layers[0];
        let fused = layer.forward(x.clone(), &cos, &sin, &packed_plan(&segments, 4, 8, false, &device), CacheMode::None).0;
        let mut masked_plan = packed_plan::<B>(&segments, 4, 8, true, &device);
        masked_plan.packed = None;
        let masked = layer.forward(x, &cos, &sin, &masked_plan, CacheMode::None).0;
        // Row 1's last two tokens are padding: compare the real ones.
        for (r, real) in [(0, 7), (1, 6)] {
            let diff: f32 = (fused.clone().slice([r..r + 1, 0..real, 0..32]) - masked.clone().slice([r..r + 1, 0..real, 0..32]))
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-5, "row {r}: worst difference {diff}");
        }
    }

    #[test]
    fn segments_longer_than_the_row_are_an_error() {
        let llm = llm();
        let err = llm.forward_packed(packed_embeds(&llm, 1, 4), &[vec![3, 2]]).unwrap_err();
        assert!(err.to_string().contains("packed"), "{err}");
        assert!(llm.forward_packed(packed_embeds(&llm, 1, 4), &[vec![2], vec![2]]).is_err());
    }
}
