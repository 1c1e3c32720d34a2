//! Fused SwiGLU activation for the CPU backend: `silu(gate) * up` (the gated MLP of Llama/Qwen2)
//! in one host pass, with its own backward in one more, instead of burn's sigmoid, two products
//! and their three backward steps (each a pass and an allocation) under `Autodiff`.
//!
//! [`swiglu`] is the dispatch point, as [`crate::attention::fused_attention`]: f32 tensors of
//! burn-flex (plain or under `Autodiff`) take the host pass; everything else gets `None` and the
//! caller runs [`reference::swiglu_reference`].

pub mod reference;

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use rayon::prelude::*;

use crate::flex_bridge::{run_host, HostGrad};

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// `silu(gate) * up` elementwise, or `None` where the host pass does not apply (another
/// backend, a dtype other than f32, shapes that differ).
///
/// # Shapes
/// `gate [..]`, `up [..]` (the same) `-> [..]`
pub fn swiglu<B: Backend, const D: usize>(gate: &Tensor<B, D>, up: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    if gate.dims() != up.dims() {
        return None;
    }
    run_host(
        [gate, up],
        gate.dims(),
        Box::new(|[g, u], keep| {
            let out = forward(&g, &u);
            let saved = keep.then(|| Arc::new(Saved { g, u }) as Arc<dyn HostGrad>);
            (out, saved)
        }),
    )
}

/// `silu(g) = g * sigmoid(g)`, with `sigmoid(g) = 1 / (1 + exp(-g))`.
#[inline]
fn sigmoid(g: f32) -> f32 {
    1.0 / (1.0 + (-g).exp())
}

/// `g * sigmoid(g) * u` for every element.
pub fn forward(g: &[f32], u: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; g.len()];
    out.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK))).for_each(|(o, (g, u))| {
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = g * sigmoid(g) * u;
        }
    });
    out
}

/// Gradients `(dgate, dup)` for the output gradient `dout`: `dup = dout * silu(g)`, `dgate =
/// dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))`.
pub fn backward(g: &[f32], u: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dg = vec![0.0; g.len()];
    let mut du = vec![0.0; g.len()];
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)).zip(dout.par_chunks(CHUNK)))
        .for_each(|((dg, du), ((g, u), dout))| {
            for i in 0..g.len() {
                let s = sigmoid(g[i]);
                du[i] = dout[i] * g[i] * s;
                dg[i] = dout[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            }
        });
    (dg, du)
}

/// The inputs, for the backward.
#[derive(Debug)]
struct Saved {
    g: Vec<f32>,
    u: Vec<f32>,
}

impl HostGrad for Saved {
    fn grads(&self, dout: &[f32]) -> Vec<Vec<f32>> {
        let (dg, du) = backward(&self.g, &self.u, dout);
        vec![dg, du]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_matches_finite_differences() {
        let g: Vec<f32> = (0..41).map(|i| i as f32 * 0.37 - 7.0).collect();
        let u: Vec<f32> = (0..41).map(|i| (i as f32 * 1.3).sin()).collect();
        let dout: Vec<f32> = (0..41).map(|i| (i as f32 * 0.7).cos()).collect();
        let (dg, du) = backward(&g, &u, &dout);
        let f = |g: f64, u: f64| g / (1.0 + (-g).exp()) * u;
        for i in 0..g.len() {
            let (gi, ui, eps) = (g[i] as f64, u[i] as f64, 1e-4);
            let ng = (f(gi + eps, ui) - f(gi - eps, ui)) / (2.0 * eps) * dout[i] as f64;
            let nu = f(gi, 1.0) * dout[i] as f64;
            assert!((ng - dg[i] as f64).abs() < 1e-4, "dgate at {i}: {} vs {ng}", dg[i]);
            assert!((nu - du[i] as f64).abs() < 1e-5, "dup at {i}: {} vs {nu}", du[i]);
        }
    }
}
