//! RMSNorm as Llama/Qwen2 compute it: statistics in f32, the normalised value cast back to the
//! input dtype before the weight multiplies it (transformers `LlamaRMSNorm`).

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// Configuration of an [`RmsNorm`].
#[derive(Config, Debug)]
pub struct RmsNormConfig {
    /// Width of the normalised (last) dimension.
    pub size: usize,
    /// Added to the mean square before the square root.
    pub eps: f64,
}

/// Root-mean-square normalisation with a learned scale named `weight` (checkpoint key).
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale `[size]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon.
    pub eps: f64,
}

impl RmsNormConfig {
    /// A norm with unit weight.
    pub fn init<B: Backend>(&self, device: &B::Device) -> RmsNorm<B> {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([self.size], device)),
            eps: self.eps,
        }
    }
}

impl<B: Backend> RmsNorm<B> {
    /// # Shapes
    /// `[batch, len, size] -> [batch, len, size]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let low_precision = dtype != DType::F32;
        let x32 = if low_precision { x.cast(FloatDType::F32) } else { x };
        let var = x32.clone().square().mean_dim(2);
        let normed = x32 * (var + self.eps).sqrt().recip();
        let normed = if low_precision { normed.cast(dtype) } else { normed };
        let weight = self.weight.val().unsqueeze_dim::<2>(0).unsqueeze_dim::<3>(0);
        normed * weight
    }
}
