//! The fused attention on the host, forward and backward, over plain `f32` slices: RoPE on the
//! queries and keys, scaled dot products, prefix masking, softmax, the weighted sum of values, and
//! the gradients of all of it, in one pass per (sample, head) instead of the dozen tensor ops (and
//! their dozen backward ops, and the strided copies between them) that burn's attention falls back
//! to under autodiff.
//!
//! Inside a task the products (`Q Kᵀ`, `P V` and the four of the backward) are small dense
//! matrix products through gemm's register-blocked kernels, over every (query, key) pair; the
//! softmax then zeroes what a query does not see.
//!
//! Every mask this kernel takes is a prefix: query `i` of sample `b` sees keys `0..visible(b, i)`
//! (causal with right padding: `min(i + 1, len_b)`; no mask: every key). A query that sees no key
//! gets zero output and zero probabilities, as burn's NaN-safe softmax gives.
//!
//! Layouts are the projections' own: `q [batch, len, heads * head_dim]`, `k`/`v [batch, len,
//! kv_heads * head_dim]`, output `[batch, len, heads * head_dim]`; RoPE tables `[batch, len,
//! head_dim]` ("rotate_half" layout, as transformers' Llama).

use rayon::prelude::*;

/// Shapes and masking of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub batch: usize,
    /// Queries and keys (the same sequence).
    pub len: usize,
    pub heads: usize,
    /// Key/value heads; `heads` is a multiple of it (grouped-query attention).
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Causal with each sample's real length (`Some`, one per sample), or every key visible.
    pub causal_lengths: Option<Vec<usize>>,
    /// Multiplies the dot products (`1 / sqrt(head_dim)` as a rule).
    pub scale: f32,
}

impl Layout {
    /// How many keys (a prefix) query `i` of sample `b` sees.
    fn visible(&self, b: usize, i: usize) -> usize {
        match &self.causal_lengths {
            Some(lengths) => (i + 1).min(lengths[b]).min(self.len),
            None => self.len,
        }
    }

    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// RoPE tables `[batch, len, head_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTables {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

/// What the forward pass gives: the output and, when asked for, each (sample, head)'s
/// probabilities `[len, len]` (row `i` holds its visible prefix, zeros after), for the backward.
#[derive(Debug, Clone)]
pub struct Forward {
    pub out: Vec<f32>,
    pub probs: Option<Vec<Vec<f32>>>,
}

/// `x` rotated by RoPE: `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = [-x2, x1]`
/// (computed in that order, so the rounding is the tensor ops').
fn rotate(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = x.len() / 2;
    for t in 0..half {
        out[t] = x[t] * cos[t] + (-x[t + half]) * sin[t];
        out[t + half] = x[t + half] * cos[t + half] + x[t] * sin[t + half];
    }
}

/// The gradient through [`rotate`]: `dx1 = dy1 cos1 + dy2 sin2`, `dx2 = dy2 cos2 - dy1 sin1`.
fn unrotate(dy: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = dy.len() / 2;
    for t in 0..half {
        out[t] = dy[t] * cos[t] + dy[t + half] * sin[t + half];
        out[t + half] = dy[t + half] * cos[t + half] - dy[t] * sin[t];
    }
}

/// Rows of head `head` of sample `b` from `x [batch, len, heads * d]` as `[len, d]`, rotated when
/// tables are given.
fn head_rows(x: &[f32], lay: &Layout, heads: usize, b: usize, head: usize, rope: Option<&RopeTables>) -> Vec<f32> {
    let (len, d) = (lay.len, lay.head_dim);
    let mut rows = vec![0.0; len * d];
    for i in 0..len {
        let src = &x[((b * len + i) * heads + head) * d..][..d];
        let dst = &mut rows[i * d..(i + 1) * d];
        match rope {
            Some(r) => {
                let at = (b * len + i) * d;
                rotate(src, &r.cos[at..at + d], &r.sin[at..at + d], dst);
            }
            None => dst.copy_from_slice(src),
        }
    }
    rows
}

/// Writes `rows [len, d]` back as head `head` of sample `b` of `x [batch, len, heads * d]` (the
/// inverse of [`head_rows`] without RoPE).
fn put_head_rows(x: &mut [f32], rows: &[f32], lay: &Layout, heads: usize, b: usize, head: usize) {
    let (len, d) = (lay.len, lay.head_dim);
    for i in 0..len {
        x[((b * len + i) * heads + head) * d..][..d].copy_from_slice(&rows[i * d..(i + 1) * d]);
    }
}

/// A row-major view of a matrix inside a slice: `rows × cols`, element `(r, c)` at
/// `r * row_stride + c * col_stride` (a transpose swaps the strides).
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// A dense row-major `rows × cols` matrix.
    fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether every element lies inside the slice.
    fn in_bounds(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst (+)= a · b` for a dense row-major `dst [a.rows × b.cols]` (added to when `accumulate`),
/// through gemm's register-blocked kernels on this thread (the callers are rayon tasks already).
fn matmul(dst: &mut [f32], accumulate: bool, a: View<'_>, b: View<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && dst.len() == m * n && a.in_bounds() && b.in_bounds(), "attention matmul: operands disagree");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: the shapes agree and every element of both operands and of `dst` lies inside its
    // slice (checked above); `dst` is a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Softmax of each score row over its visible prefix (scaled first); the rest of the row is set
/// to zero. `scores [len, len]`.
fn softmax_rows(lay: &Layout, b: usize, scores: &mut [f32]) {
    let len = lay.len;
    for (i, row) in scores.chunks_exact_mut(len).enumerate() {
        let m = lay.visible(b, i);
        let (seen, hidden) = row.split_at_mut(m);
        hidden.fill(0.0);
        let mut max = f32::NEG_INFINITY;
        for v in seen.iter_mut() {
            *v *= lay.scale;
            max = max.max(*v);
        }
        let mut sum = 0.0;
        for v in seen.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in seen.iter_mut() {
            *v /= sum;
        }
    }
}

/// The forward pass; keeps the probabilities when `keep_probs` (for [`backward`]).
pub fn forward(lay: &Layout, q: &[f32], k: &[f32], v: &[f32], rope: Option<&RopeTables>, keep_probs: bool) -> Forward {
    let (len, d, h) = (lay.len, lay.head_dim, lay.heads);
    let tasks: Vec<(usize, usize)> = (0..lay.batch).flat_map(|b| (0..h).map(move |head| (b, head))).collect();
    let results: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(b, head)| {
            let g = head / lay.group();
            let queries = head_rows(q, lay, h, b, head, rope);
            let keys = head_rows(k, lay, lay.kv_heads, b, g, rope);
            let values = head_rows(v, lay, lay.kv_heads, b, g, None);
            // scores = Q Kᵀ over every pair (a causal row's hidden part is zeroed by the softmax)
            let mut probs = vec![0.0; len * len];
            matmul(&mut probs, false, View::dense(&queries, len, d), View::dense(&keys, len, d).t());
            softmax_rows(lay, b, &mut probs);
            let mut out = vec![0.0; len * d];
            matmul(&mut out, false, View::dense(&probs, len, len), View::dense(&values, len, d));
            (out, if keep_probs { probs } else { Vec::new() })
        })
        .collect();
    let mut out = vec![0.0; lay.batch * len * h * d];
    let mut kept = Vec::with_capacity(if keep_probs { tasks.len() } else { 0 });
    for (&(b, head), (o, probs)) in tasks.iter().zip(results) {
        put_head_rows(&mut out, &o, lay, h, b, head);
        if keep_probs {
            kept.push(probs);
        }
    }
    Forward { out, probs: keep_probs.then_some(kept) }
}

/// Gradients `(dq, dk, dv)` of the forward pass's output for its incoming gradient `dout` (same
/// layout as the output); `probs` from [`forward`] with `keep_probs`.
pub fn backward(
    lay: &Layout,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    rope: Option<&RopeTables>,
    probs: &[Vec<f32>],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (len, d, h, hk) = (lay.len, lay.head_dim, lay.heads, lay.kv_heads);
    let group = lay.group();
    let tasks: Vec<(usize, usize)> = (0..lay.batch).flat_map(|b| (0..hk).map(move |g| (b, g))).collect();
    // One task per (sample, key/value head): it owns that head's key and value gradients and the
    // query gradients of its group of heads.
    let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(b, g)| {
            let keys = head_rows(k, lay, hk, b, g, rope);
            let values = head_rows(v, lay, hk, b, g, None);
            let mut dkeys = vec![0.0; len * d];
            let mut dvalues = vec![0.0; len * d];
            let mut dqueries = vec![0.0; group * len * d];
            let mut ds = vec![0.0; len * len];
            for member in 0..group {
                let head = g * group + member;
                let queries = head_rows(q, lay, h, b, head, rope);
                let dout_h = head_rows(dout, lay, h, b, head, None);
                let p = &probs[b * h + head];
                // dV += Pᵀ dO; dP = dO Vᵀ
                matmul(&mut dvalues, member > 0, View::dense(p, len, len).t(), View::dense(&dout_h, len, d));
                matmul(&mut ds, false, View::dense(&dout_h, len, d), View::dense(&values, len, d).t());
                // dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the scale: the gradient of the raw products
                for (p_row, ds_row) in p.chunks_exact(len).zip(ds.chunks_exact_mut(len)) {
                    let dot: f32 = p_row.iter().zip(ds_row.iter()).map(|(p, dp)| p * dp).sum();
                    for (dsv, &pv) in ds_row.iter_mut().zip(p_row) {
                        *dsv = pv * (*dsv - dot) * lay.scale;
                    }
                }
                // dQ = dS K; dK += dSᵀ Q
                let dq_h = &mut dqueries[member * len * d..(member + 1) * len * d];
                matmul(dq_h, false, View::dense(&ds, len, len), View::dense(&keys, len, d));
                matmul(&mut dkeys, member > 0, View::dense(&ds, len, len).t(), View::dense(&queries, len, d));
                if let Some(r) = rope {
                    unrotate_rows(dq_h, r, b, len, d);
                }
            }
            if let Some(r) = rope {
                unrotate_rows(&mut dkeys, r, b, len, d);
            }
            (dqueries, dkeys, dvalues)
        })
        .collect();
    let mut dq = vec![0.0; lay.batch * len * h * d];
    let mut dk = vec![0.0; lay.batch * len * hk * d];
    let mut dv = vec![0.0; lay.batch * len * hk * d];
    for (&(b, g), (dqueries, dkeys, dvalues)) in tasks.iter().zip(results) {
        put_head_rows(&mut dk, &dkeys, lay, hk, b, g);
        put_head_rows(&mut dv, &dvalues, lay, hk, b, g);
        for member in 0..group {
            let dq_h = &dqueries[member * len * d..(member + 1) * len * d];
            put_head_rows(&mut dq, dq_h, lay, h, b, g * group + member);
        }
    }
    (dq, dk, dv)
}

/// Undoes RoPE on the gradients of sample `b`'s rotated rows `[len, d]`, in place.
fn unrotate_rows(rows: &mut [f32], r: &RopeTables, b: usize, len: usize, d: usize) {
    let mut row = vec![0.0; d];
    for j in 0..len {
        let at = (b * len + j) * d;
        unrotate(&rows[j * d..(j + 1) * d], &r.cos[at..at + d], &r.sin[at..at + d], &mut row);
        rows[j * d..(j + 1) * d].copy_from_slice(&row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention written out naively in f64 (full score matrix, explicit mask), for the host
    /// kernel's own checks; the tensor-op reference twin is compared in the integration tests.
    fn naive(lay: &Layout, q: &[f32], k: &[f32], v: &[f32], rope: Option<&RopeTables>) -> Vec<f64> {
        let (len, d, h, hk) = (lay.len, lay.head_dim, lay.heads, lay.kv_heads);
        let mut out = vec![0.0; lay.batch * len * h * d];
        for b in 0..lay.batch {
            for head in 0..h {
                let g = head / lay.group();
                let qs = head_rows(q, lay, h, b, head, rope);
                let ks = head_rows(k, lay, hk, b, g, rope);
                let vs = head_rows(v, lay, hk, b, g, None);
                for i in 0..len {
                    let m = lay.visible(b, i);
                    let s: Vec<f64> = (0..m)
                        .map(|j| (0..d).map(|t| qs[i * d + t] as f64 * ks[j * d + t] as f64).sum::<f64>() * lay.scale as f64)
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for t in 0..d {
                        out[((b * len + i) * h + head) * d + t] = (0..m).map(|j| e[j] / sum * vs[j * d + t] as f64).sum();
                    }
                }
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    fn case(causal: bool) -> (Layout, Vec<f32>, Vec<f32>, Vec<f32>, RopeTables) {
        let lay = Layout {
            batch: 2,
            len: 5,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            causal_lengths: causal.then(|| vec![5, 3]),
            scale: 0.5,
        };
        let (b, l, d) = (lay.batch, lay.len, lay.head_dim);
        let rope = RopeTables { cos: data(b * l * d, 7), sin: data(b * l * d, 9) };
        (lay, data(b * l * 4 * d, 1), data(b * l * 2 * d, 2), data(b * l * 2 * d, 3), rope)
    }

    #[test]
    fn forward_matches_a_naive_f64_attention() {
        for causal in [true, false] {
            let (lay, q, k, v, rope) = case(causal);
            let ours = forward(&lay, &q, &k, &v, Some(&rope), false).out;
            let want = naive(&lay, &q, &k, &v, Some(&rope));
            let worst = ours.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-5, "causal={causal}: worst difference {worst}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let (lay, q, k, v, rope) = case(true);
        let dout = data(q.len(), 5);
        let fwd = forward(&lay, &q, &k, &v, Some(&rope), true);
        let (dq, dk, dv) = backward(&lay, &q, &k, &v, Some(&rope), fwd.probs.as_ref().unwrap(), &dout);
        // loss = sum(out * dout), evaluated in f64
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            naive(&lay, q, k, v, Some(&rope)).iter().zip(&dout).map(|(o, g)| o * *g as f64).sum()
        };
        let eps = 1e-3f32;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            for at in [0, 3, 17, grad.len() - 1] {
                let (mut plus, mut minus) = ([q.clone(), k.clone(), v.clone()], [q.clone(), k.clone(), v.clone()]);
                plus[which][at] += eps;
                minus[which][at] -= eps;
                let numeric = (loss(&plus[0], &plus[1], &plus[2]) - loss(&minus[0], &minus[1], &minus[2])) / (2.0 * eps as f64);
                assert!(
                    (numeric - grad[at] as f64).abs() < 2e-3,
                    "input {which} element {at}: analytic {} numeric {numeric}",
                    grad[at]
                );
            }
        }
    }

    #[test]
    fn a_query_that_sees_no_key_gets_zeros() {
        let (mut lay, q, k, v, rope) = case(true);
        lay.causal_lengths = Some(vec![5, 0]);
        let fwd = forward(&lay, &q, &k, &v, Some(&rope), true);
        let per_sample = lay.len * lay.heads * lay.head_dim;
        assert!(fwd.out[per_sample..].iter().all(|&x| x == 0.0));
        let (dq, dk, dv) = backward(&lay, &q, &k, &v, Some(&rope), fwd.probs.as_ref().unwrap(), &q);
        assert!(dq[per_sample..].iter().all(|&x| x == 0.0));
        let kv = lay.len * lay.kv_heads * lay.head_dim;
        assert!(dk[kv..].iter().chain(&dv[kv..]).all(|&x| x == 0.0));
    }
}
