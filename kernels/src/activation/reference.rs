//! The fused activations' twins in tensor ops (any backend), as the models wrote them before.

use burn::tensor::activation::{gelu, sigmoid, silu};
use burn::tensor::{backend::Backend, Tensor};

/// `silu(gate) * up`.
pub fn swiglu_reference<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// `x * sigmoid(1.702 x)` (transformers' `QuickGELUActivation`).
pub fn quick_gelu_reference<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x * 1.702)
}

/// `0.5 x (1 + erf(x / √2))` (`nn.GELU()`), burn's own op.
pub fn gelu_reference<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu(x)
}
