//! The fused activations' host passes over `f32` slices, split into rayon tasks of [`CHUNK`]
//! elements.

use rayon::prelude::*;

use crate::fast_math;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// `1 / (1 + exp(-x))`.
#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + fast_math::exp(-x))
}

/// `out[i] = f(a[i], b[i])` in parallel chunks.
fn map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0; a.len()];
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
    out
}

/// `g * sigmoid(g) * u` for every element.
pub fn swiglu(g: &[f32], u: &[f32]) -> Vec<f32> {
    map2(g, u, |g, u| g * sigmoid(g) * u)
}

/// Gradients `(dgate, dup)` for the output gradient `dout`: `dup = dout * silu(g)`, `dgate =
/// dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))`.
pub fn swiglu_backward(g: &[f32], u: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>) {
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

/// `1 / √2`, GELU's scale inside `erf`.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `1 / √(2π)`, the standard normal density's factor.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `0.5 x (1 + erf(x / √2))` for every element (the exact GELU, with [`fast_math::erf`]).
pub fn gelu(x: &[f32]) -> Vec<f32> {
    map2(x, x, |x, _| 0.5 * x * (1.0 + fast_math::erf(x * FRAC_1_SQRT_2)))
}

/// The input gradient for the output gradient `dout`: `dout * (Φ(x) + x φ(x))`, with
/// `Φ(x) = 0.5 (1 + erf(x / √2))` and `φ(x) = e^(-x²/2) / √(2π)`, as PyTorch's GELU backward.
pub fn gelu_backward(x: &[f32], dout: &[f32]) -> Vec<f32> {
    map2(x, dout, |x, d| {
        let cdf = 0.5 * (1.0 + fast_math::erf(x * FRAC_1_SQRT_2));
        let pdf = FRAC_1_SQRT_2PI * fast_math::exp(-0.5 * x * x);
        d * (cdf + x * pdf)
    })
}

/// `x * sigmoid(1.702 x)` for every element.
pub fn quick_gelu(x: &[f32]) -> Vec<f32> {
    map2(x, x, |x, _| x * sigmoid(x * 1.702))
}

/// The input gradient for the output gradient `dout`: `dout * (s + 1.702 x s (1 - s))` with
/// `s = sigmoid(1.702 x)`.
pub fn quick_gelu_backward(x: &[f32], dout: &[f32]) -> Vec<f32> {
    map2(x, dout, |x, d| {
        let s = sigmoid(x * 1.702);
        d * (s + 1.702 * x * s * (1.0 - s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(analytic: &[f32], numeric: impl Fn(usize) -> f64, tol: f64, what: &str) {
        for (i, &a) in analytic.iter().enumerate() {
            let n = numeric(i);
            assert!((n - a as f64).abs() < tol, "{what} at {i}: {a} vs {n}");
        }
    }

    #[test]
    fn backward_passes_match_finite_differences() {
        let g: Vec<f32> = (0..41).map(|i| i as f32 * 0.37 - 7.0).collect();
        let u: Vec<f32> = (0..41).map(|i| (i as f32 * 1.3).sin()).collect();
        let dout: Vec<f32> = (0..41).map(|i| (i as f32 * 0.7).cos()).collect();
        let eps = 1e-4;
        let silu = |g: f64| g / (1.0 + (-g).exp());
        let (dg, du) = swiglu_backward(&g, &u, &dout);
        check(&dg, |i| (silu(g[i] as f64 + eps) - silu(g[i] as f64 - eps)) / (2.0 * eps) * u[i] as f64 * dout[i] as f64, 1e-4, "dgate");
        check(&du, |i| silu(g[i] as f64) * dout[i] as f64, 1e-5, "dup");
        let qg = |x: f64| x / (1.0 + (-1.702 * x).exp());
        let dx = quick_gelu_backward(&g, &dout);
        check(&dx, |i| (qg(g[i] as f64 + eps) - qg(g[i] as f64 - eps)) / (2.0 * eps) * dout[i] as f64, 1e-4, "quick gelu");
    }
}
