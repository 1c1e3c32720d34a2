//! Fused activations for the CPU backend, each one host pass forward and one backward instead of
//! burn's chain of elementwise ops (each a pass, an allocation and a recorded backward step under
//! `Autodiff`):
//! - [`swiglu`]: `silu(gate) * up`, the gated MLP of Llama/Qwen2;
//! - [`quick_gelu`]: `x * sigmoid(1.702 x)`, CLIP's MLP activation;
//! - [`gelu`]: `0.5 x (1 + erf(x / √2))`, the exact GELU of LLaVA's `mlp2x_gelu` projector, the
//!   Perceiver Resampler's feed-forward and vision towers with `hidden_act = "gelu"`, with
//!   PyTorch's CPU `erf` approximation (`fast_math`).
//!
//! Each is a dispatch point, as [`crate::attention::fused_attention`]: f32 tensors of burn-flex
//! (plain or under `Autodiff`) take the [`host`] pass; everything else gets `None` and the caller
//! runs the tensor-op twin in [`reference`].

pub mod host;
pub mod reference;

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

use crate::flex_bridge::{run_host, HostGrad, HostValues};

/// `silu(gate) * up` elementwise, or `None` where the host pass does not apply (another
/// backend, a dtype other than f32, shapes that differ).
pub fn swiglu<B: Backend, const D: usize>(gate: &Tensor<B, D>, up: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() {
        return None;
    }
    run_host(
        [gate, up],
        gate.dims(),
        Box::new(|[g, u], keep| {
            let out = host::swiglu(&g, &u);
            (out, keep.then(|| Arc::new(SwigluSaved { g, u }) as Arc<dyn HostGrad>))
        }),
    )
}

/// `x * sigmoid(1.702 x)` elementwise (transformers' `QuickGELUActivation`), or `None` where the
/// host pass does not apply (another backend, a dtype other than f32).
pub fn quick_gelu<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    unary(x, host::quick_gelu, host::quick_gelu_backward)
}

/// `0.5 x (1 + erf(x / √2))` elementwise (`nn.GELU()`, exact form), or `None` where the host pass
/// does not apply (another backend, a dtype other than f32).
pub fn gelu<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    unary(x, host::gelu, host::gelu_backward)
}

/// A one-input activation as a host op: `forward` over the input's values, and under `Autodiff`
/// a backward step giving `backward(x, dout)`.
fn unary<B: Backend, const D: usize>(x: &Tensor<B, D>, forward: fn(&[f32]) -> Vec<f32>, backward: UnaryBackward) -> Option<Tensor<B, D>> {
    run_host(
        [x],
        x.dims(),
        Box::new(move |[x], keep| {
            let out = forward(&x);
            (out, keep.then(|| Arc::new(UnarySaved { x, backward }) as Arc<dyn HostGrad>))
        }),
    )
}

/// SwiGLU's inputs, for its backward.
#[derive(Debug)]
struct SwigluSaved {
    g: HostValues,
    u: HostValues,
}

impl HostGrad for SwigluSaved {
    fn grads(&self, dout: &[f32], _needed: &[bool]) -> Vec<Option<Vec<f32>>> {
        let (dg, du) = host::swiglu_backward(&self.g, &self.u, dout);
        vec![Some(dg), Some(du)]
    }
}

/// The input gradient of a one-input activation from its input and output gradient.
type UnaryBackward = fn(&[f32], &[f32]) -> Vec<f32>;

/// A one-input activation's input and backward pass.
#[derive(Debug)]
struct UnarySaved {
    x: HostValues,
    backward: UnaryBackward,
}

impl HostGrad for UnarySaved {
    fn grads(&self, dout: &[f32], _needed: &[bool]) -> Vec<Option<Vec<f32>>> {
        vec![Some((self.backward)(&self.x, dout))]
    }
}
