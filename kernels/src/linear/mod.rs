//! A linear layer (`x W + b`, burn's `Linear`) for the CPU backend: one gemm over all of `x`'s
//! rows at once, written onto the bias, and under `Autodiff` one backward step that computes only
//! the gradients asked for (a frozen LLM's layers: the input's alone).
//!
//! burn 0.21's own `linear` on burn-flex broadcasts the weight into a batched product (one small
//! gemm per leading index, the batch split over threads), allocates each output through
//! `FlexTensor::empty` (zeroed, then copied again to align it), adds the bias in a second pass, and
//! sums the weight gradient from a `[batch, d_input, d_output]` intermediate. As the other host
//! ops, [`linear`] is a dispatch point: f32 tensors of burn-flex (plain or under `Autodiff`) take
//! the [`host`] pass; everything else gets `None` and [`forward`] runs [`reference`], or, when
//! the matrix-product engine is cuBLAS ([`crate::gemm::set_engine`]), [`gemm_step`] (the products
//! on cuBLAS on burn's CUDA backend, forward and backward).

pub mod gemm_step;
pub mod host;
pub mod reference;

use std::sync::Arc;

use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};

use crate::flex_bridge::{is_flex, run_host, HostGrad, HostValues};

/// `x W + b` for `x [..., d_input]`, `weight [d_input, d_output]`, `bias [d_output]`, or `None`
/// where the host pass does not apply (another backend, a dtype other than f32, shapes that
/// disagree).
pub fn linear<B: Backend, const D: usize>(x: &Tensor<B, D>, weight: &Tensor<B, 2>, bias: Option<&Tensor<B, 1>>) -> Option<Tensor<B, D>> {
    if !is_flex::<B>() || D == 0 {
        return None;
    }
    let dims = x.dims();
    let k = dims[D - 1];
    let [wk, n] = weight.dims();
    if wk != k || bias.is_some_and(|b| b.dims() != [n]) {
        return None;
    }
    let m: usize = dims[..D - 1].iter().product();
    let x2 = x.clone().reshape([m, k]);
    let out = match bias {
        Some(b) => {
            let b2 = b.clone().reshape([1, n]);
            run_host(
                [&x2, weight, &b2],
                [m, n],
                Box::new(move |[x, w, b], keep| {
                    let out = host::forward(&x, &w, Some(&b), m, k, n);
                    (out, keep.then(|| Arc::new(Saved { x, w, m, k, n }) as Arc<dyn HostGrad>))
                }),
            )
        }
        None => run_host(
            [&x2, weight],
            [m, n],
            Box::new(move |[x, w], keep| {
                let out = host::forward(&x, &w, None, m, k, n);
                (out, keep.then(|| Arc::new(Saved { x, w, m, k, n }) as Arc<dyn HostGrad>))
            }),
        ),
    }?;
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    Some(out.reshape(out_dims))
}

/// `layer.forward(x)`, through [`linear`] where it applies.
pub fn forward<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let weight = layer.weight.val();
    let bias = layer.bias.as_ref().map(|b| b.val());
    if let Some(out) = linear(&x, &weight, bias.as_ref()) {
        return out;
    }
    if crate::gemm::engine() == crate::gemm::MatmulEngine::Cublas {
        if let Some(out) = gemm_step::linear(&x, &weight, bias.as_ref()) {
            return out;
        }
    }
    reference::linear_reference(x, weight, bias)
}

/// The input and weight, for the backward pass (the bias' gradient needs neither).
#[derive(Debug)]
struct Saved {
    x: HostValues,
    w: HostValues,
    m: usize,
    k: usize,
    n: usize,
}

impl HostGrad for Saved {
    fn grads(&self, dout: &[f32], needed: &[bool]) -> Vec<Option<Vec<f32>>> {
        let (m, k, n) = (self.m, self.k, self.n);
        let mut grads = vec![
            needed[0].then(|| host::grad_x(dout, &self.w, m, k, n)),
            needed[1].then(|| host::grad_weight(&self.x, dout, m, k, n)),
        ];
        if needed.len() > 2 {
            grads.push(needed[2].then(|| host::grad_bias(dout, n)));
        }
        grads
    }
}
