//! The fused activations' twins in tensor ops (any backend), as the models wrote them before.

use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{backend::Backend, Tensor};

/// `silu(gate) * up`.
pub fn swiglu_reference<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// `x * sigmoid(1.702 x)` (transformers' `QuickGELUActivation`).
pub fn quick_gelu_reference<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone() * sigmoid(x * 1.702)
}
