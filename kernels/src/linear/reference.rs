//! The linear layer's twin in tensor ops (any backend): burn's own `linear`.

use burn::tensor::{backend::Backend, module, Tensor};

/// `x W + b` with `weight [d_input, d_output]`, `bias [d_output]`.
pub fn linear_reference<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    module::linear(x, weight, bias)
}
