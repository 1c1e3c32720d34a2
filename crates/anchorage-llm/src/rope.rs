//! Rotary position embeddings at explicit positions (pruned sequences keep their original
//! positions). Frequencies follow transformers' `modeling_rope_utils.py` (default, linear,
//! llama3) and `LlamaRotaryEmbedding`/`apply_rotary_pos_emb` in
//! huggingface/transformers `src/transformers/models/llama/modeling_llama.py` (the
//! "rotate_half" layout, not interleaved pairs).

use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorData};

use crate::config::RopeScaling;

/// Inverse frequencies of one model; computed once on the host.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `head_dim / 2` inverse frequencies for `theta` with `scaling` applied.
    pub fn new(head_dim: usize, theta: f64, scaling: RopeScaling) -> Self {
        // transformers computes `1 / base ** (arange(0, dim, 2).float() / dim)` in f32.
        let base: Vec<f32> = (0..head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0 / (theta as f32).powf(exponent)
            })
            .collect();
        let inv_freq = match scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor as f32).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f as f64;
                        let scaled = if wavelen > low_wavelen { f as f64 / factor } else { f as f64 };
                        if wavelen < high_wavelen || wavelen > low_wavelen {
                            scaled as f32
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        }
                    })
                    .collect()
            }
        };
        Self { inv_freq }
    }

    /// The inverse frequencies (length `head_dim / 2`).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// cos and sin tables at the given positions, in `dtype`.
    ///
    /// # Shapes
    /// `positions [batch, len]` -> (`[batch, 1, len, head_dim]`, `[batch, 1, len, head_dim]`)
    pub fn cos_sin<B: Backend>(&self, positions: Tensor<B, 2, Int>, dtype: DType) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let device = positions.device();
        let half = self.inv_freq.len();
        let inv = Tensor::<B, 1>::from_data(TensorData::new(self.inv_freq.clone(), [half]), (&device, DType::F32))
            .reshape([1, 1, half]);
        let pos = positions.float().cast(FloatDType::F32).unsqueeze_dim::<3>(2);
        let freqs = pos * inv;
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2).unsqueeze_dim::<4>(1);
        let (cos, sin) = (emb.clone().cos(), emb.sin());
        if dtype == DType::F32 {
            (cos, sin)
        } else {
            (cos.cast(dtype), sin.cast(dtype))
        }
    }
}

/// Rotates `x` by the tables from [`Rope::cos_sin`].
///
/// # Shapes
/// `x [batch, heads, len, head_dim]`, `cos`/`sin [batch, 1, len, head_dim]` -> `[batch, heads, len, head_dim]`
pub fn apply_rope<B: Backend>(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, h, l, d] = x.dims();
    let half = d / 2;
    // Every operand dense in `[batch, heads, len, head_dim]` order: `x` arrives as a transposed
    // view of the projection and the tables broadcast over heads, and CPU backends (burn-flex)
    // walk such views one index at a time, in the backward pass too. The reshapes through
    // `[batch * heads, ...]` copy a view into that order once (and are free on a dense tensor).
    let dense = |t: Tensor<B, 4>| t.reshape([b * h, l, d]).reshape([b, h, l, d]);
    let x = dense(x);
    let (cos, sin) = (dense(cos.clone().expand([b, h, l, d])), dense(sin.clone().expand([b, h, l, d])));
    let x1 = x.clone().slice([0..b, 0..h, 0..l, 0..half]);
    let x2 = x.clone().slice([0..b, 0..h, 0..l, half..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos + rotated * sin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_divides_low_and_smooths_middle() {
        let plain = Rope::new(8, 500000.0, RopeScaling::None);
        let scaled = Rope::new(
            8,
            500000.0,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 256,
            },
        );
        let (p, s) = (plain.inv_freq(), scaled.inv_freq());
        // wavelengths: 6.3 (< 64: kept), 167 (in 64..256: smoothed), 4450 and 118000 (> 256: / 8).
        assert_eq!(p[0], s[0]);
        assert!(s[1] < p[1] && s[1] > p[1] / 8.0);
        assert!((s[2] - p[2] / 8.0).abs() < 1e-12 && (s[3] - p[3] / 8.0).abs() < 1e-12);
    }

    #[test]
    fn position_zero_is_identity() {
        type B = burn::backend::Flex;
        let device = Default::default();
        let rope = Rope::new(4, 10000.0, RopeScaling::None);
        let x = Tensor::<B, 4>::from_floats([[[[1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 0.0]]]], &device);
        let pos = Tensor::<B, 2, Int>::from_ints([[0, 1]], &device);
        let (cos, sin) = rope.cos_sin(pos, DType::F32);
        let y = apply_rope(x, &cos, &sin).into_data().to_vec::<f32>().unwrap();
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        // position 1, first pair rotated by 1 radian: (cos 1, ., sin 1, .)
        assert!((y[4] - 1f32.cos()).abs() < 1e-6 && (y[6] - 1f32.sin()).abs() < 1e-6);
    }
}
