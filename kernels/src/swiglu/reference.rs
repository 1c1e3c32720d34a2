//! The fused SwiGLU's twin in tensor ops (any backend): burn's `silu` and a product.

use burn::tensor::activation::silu;
use burn::tensor::{backend::Backend, Tensor};

/// `silu(gate) * up`.
pub fn swiglu_reference<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}
