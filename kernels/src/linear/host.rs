//! The linear layer's host passes over `f32` slices: `x [m, k]`, `weight [k, n]` (burn's `Linear`
//! layout, the transpose of PyTorch's), `bias [n]`, each product one gemm call split over rayon's
//! threads when it is large enough.

use crate::host_gemm::{matmul_parallel, View};

/// `x W + b`: the output starts as the bias in every row (zeros without one) and the product is
/// added onto it.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = match bias {
        Some(b) => b.repeat(m),
        None => vec![0.0; m * n],
    };
    matmul_parallel(&mut out, true, View::dense(x, m, k), View::dense(weight, k, n));
    out
}

/// `dx = dout Wᵀ`, `[m, k]`.
pub fn grad_x(dout: &[f32], weight: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut dx = vec![0.0; m * k];
    matmul_parallel(&mut dx, false, View::dense(dout, m, n), View::dense(weight, k, n).t());
    dx
}

/// `dW = xᵀ dout`, `[k, n]`.
pub fn grad_weight(x: &[f32], dout: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut dw = vec![0.0; k * n];
    matmul_parallel(&mut dw, false, View::dense(x, m, k).t(), View::dense(dout, m, n));
    dw
}

/// `db = Σ_rows dout`, `[n]`.
pub fn grad_bias(dout: &[f32], n: usize) -> Vec<f32> {
    let mut db = vec![0.0; n];
    for row in dout.chunks_exact(n.max(1)) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
    }

    /// The passes against loops in f64, at a size that takes gemm's parallel path.
    #[test]
    fn passes_match_plain_loops() {
        for (m, k, n) in [(3, 4, 5), (260, 200, 190), (0, 4, 5), (4, 0, 3)] {
            let (x, w, b, dout) = (values(m * k, 0.1), values(k * n, 0.2), values(n, 0.3), values(m * n, 0.4));
            let out = forward(&x, &w, Some(&b), m, k, n);
            let dx = grad_x(&dout, &w, m, k, n);
            let dw = grad_weight(&x, &dout, m, k, n);
            let db = grad_bias(&dout, n);
            let close = |a: f32, b: f64, what: &str| assert!((a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()), "{what} ({m}, {k}, {n}): {a} vs {b}");
            for i in 0..m {
                for j in 0..n {
                    let want = b[j] as f64 + (0..k).map(|t| x[i * k + t] as f64 * w[t * n + j] as f64).sum::<f64>();
                    close(out[i * n + j], want, "out");
                }
                for t in 0..k {
                    let want: f64 = (0..n).map(|j| dout[i * n + j] as f64 * w[t * n + j] as f64).sum();
                    close(dx[i * k + t], want, "dx");
                }
            }
            for t in 0..k {
                for j in 0..n {
                    let want: f64 = (0..m).map(|i| x[i * k + t] as f64 * dout[i * n + j] as f64).sum();
                    close(dw[t * n + j], want, "dw");
                }
            }
            for j in 0..n {
                close(db[j], (0..m).map(|i| dout[i * n + j] as f64).sum(), "db");
            }
            assert_eq!(forward(&x, &w, None, m, k, n).len(), m * n);
        }
    }
}
