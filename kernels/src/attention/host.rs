//! The fused attention on the host, forward and backward, over plain `f32` slices: RoPE on the
//! queries and keys, scaled dot products, masking, softmax, the weighted sum of values, and the
//! gradients of all of it, in one pass per (sequence, head) instead of the dozen tensor ops (and
//! their dozen backward ops, and the strided copies between them) that burn's attention falls back
//! to under autodiff.
//!
//! Inside a task the products (`Q Kᵀ`, `P V` and the four of the backward) are small dense
//! matrix products through gemm's register-blocked kernels, over every (query, key) pair of the
//! sequence; the softmax then zeroes what a query does not see.
//!
//! A task is one [`Span`] of a row, and every mask this kernel takes is a prefix within it: query
//! `i` of the span sees its keys `0..visible(i)`. Causal with right padding: the whole row,
//! `min(i + 1, len_b)`; no mask: the whole row, every key; packed sequences: each sequence its own
//! span, `i + 1` (tokens after a row's last sequence belong to no span and get zeros). A query that
//! sees no key gets zero output and zero probabilities, as burn's NaN-safe softmax gives.
//!
//! Layouts are the projections' own: `q [batch, len, heads * head_dim]`, `k`/`v [batch, len,
//! kv_heads * head_dim]`, output `[batch, len, heads * head_dim]`; RoPE tables `[batch, len,
//! head_dim]` ("rotate_half" layout, as transformers' Llama).

use rayon::prelude::*;

use super::Visibility;
use crate::fast_math;
use crate::host_gemm::{matmul, View};

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
    /// Which keys each query sees (the lengths and segments agree with `batch` and `len`).
    pub visibility: Visibility,
    /// Multiplies the dot products (`1 / sqrt(head_dim)` as a rule).
    pub scale: f32,
}

/// The tokens `start..start + len` of row `b`: one attention problem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub b: usize,
    pub start: usize,
    pub len: usize,
}

impl Layout {
    /// The attention problems of the call: each row whole, or each packed sequence (empty ones
    /// left out).
    pub fn spans(&self) -> Vec<Span> {
        match &self.visibility {
            Visibility::Packed { segments } => segments
                .iter()
                .enumerate()
                .flat_map(|(b, row)| {
                    let mut start = 0;
                    row.iter()
                        .map(move |&len| {
                            let span = Span { b, start, len };
                            start += len;
                            span
                        })
                        .filter(|span| span.len > 0)
                })
                .collect(),
            _ => (0..self.batch).map(|b| Span { b, start: 0, len: self.len }).collect(),
        }
    }

    /// How many keys (a prefix of the span) its query `i` sees.
    fn visible(&self, span: &Span, i: usize) -> usize {
        match &self.visibility {
            Visibility::All => span.len,
            Visibility::Causal { lengths } => (i + 1).min(lengths[span.b]).min(span.len),
            Visibility::Packed { .. } => i + 1,
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

/// The span's rows of head `head` from `x [batch, len, heads * d]` as `[span.len, d]`, rotated
/// when tables are given.
fn head_rows(x: &[f32], lay: &Layout, heads: usize, span: &Span, head: usize, rope: Option<&RopeTables>) -> Vec<f32> {
    let d = lay.head_dim;
    let mut rows = vec![0.0; span.len * d];
    for i in 0..span.len {
        let token = span.b * lay.len + span.start + i;
        let src = &x[(token * heads + head) * d..][..d];
        let dst = &mut rows[i * d..(i + 1) * d];
        match rope {
            Some(r) => {
                let at = token * d;
                rotate(src, &r.cos[at..at + d], &r.sin[at..at + d], dst);
            }
            None => dst.copy_from_slice(src),
        }
    }
    rows
}

/// Writes `rows [span.len, d]` back as the span's rows of head `head` of `x [batch, len, heads *
/// d]` (the inverse of [`head_rows`] without RoPE).
fn put_head_rows(x: &mut [f32], rows: &[f32], lay: &Layout, heads: usize, span: &Span, head: usize) {
    let d = lay.head_dim;
    for i in 0..span.len {
        let token = span.b * lay.len + span.start + i;
        x[(token * heads + head) * d..][..d].copy_from_slice(&rows[i * d..(i + 1) * d]);
    }
}

/// Softmax of each score row over its visible prefix (scaled first); the rest of the row is set
/// to zero. `scores [span.len, span.len]`.
fn softmax_rows(lay: &Layout, span: &Span, scores: &mut [f32]) {
    for (i, row) in scores.chunks_exact_mut(span.len).enumerate() {
        let m = lay.visible(span, i);
        let (seen, hidden) = row.split_at_mut(m);
        hidden.fill(0.0);
        let mut max = f32::NEG_INFINITY;
        for v in seen.iter_mut() {
            *v *= lay.scale;
            max = max.max(*v);
        }
        // Two loops: the first vectorises (no carried sum), the second is a plain sum.
        for v in seen.iter_mut() {
            *v = fast_math::exp(*v - max);
        }
        let sum: f32 = seen.iter().sum();
        for v in seen.iter_mut() {
            *v /= sum;
        }
    }
}

/// The forward pass; keeps the probabilities when `keep_probs` (for [`backward`]): one `[n, n]`
/// matrix per (span, head), in [`Layout::spans`]' order, heads innermost.
pub fn forward(lay: &Layout, q: &[f32], k: &[f32], v: &[f32], rope: Option<&RopeTables>, keep_probs: bool) -> Forward {
    let (d, h) = (lay.head_dim, lay.heads);
    let spans = lay.spans();
    let tasks: Vec<(Span, usize)> = spans.iter().flat_map(|&span| (0..h).map(move |head| (span, head))).collect();
    let results: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(span, head)| {
            let (g, n) = (head / lay.group(), span.len);
            let queries = head_rows(q, lay, h, &span, head, rope);
            let keys = head_rows(k, lay, lay.kv_heads, &span, g, rope);
            let values = head_rows(v, lay, lay.kv_heads, &span, g, None);
            // scores = Q Kᵀ over every pair (a causal row's hidden part is zeroed by the softmax)
            let mut probs = vec![0.0; n * n];
            matmul(&mut probs, false, View::dense(&queries, n, d), View::dense(&keys, n, d).t());
            softmax_rows(lay, &span, &mut probs);
            let mut out = vec![0.0; n * d];
            matmul(&mut out, false, View::dense(&probs, n, n), View::dense(&values, n, d));
            (out, if keep_probs { probs } else { Vec::new() })
        })
        .collect();
    let mut out = vec![0.0; lay.batch * lay.len * h * d];
    let mut kept = Vec::with_capacity(if keep_probs { tasks.len() } else { 0 });
    for (&(span, head), (o, probs)) in tasks.iter().zip(results) {
        put_head_rows(&mut out, &o, lay, h, &span, head);
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
    let (d, h, hk) = (lay.head_dim, lay.heads, lay.kv_heads);
    let group = lay.group();
    let spans = lay.spans();
    let tasks: Vec<(usize, usize)> = (0..spans.len()).flat_map(|s| (0..hk).map(move |g| (s, g))).collect();
    // One task per (span, key/value head): it owns that head's key and value gradients and the
    // query gradients of its group of heads.
    let results: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(s, g)| {
            let (span, len) = (spans[s], spans[s].len);
            let keys = head_rows(k, lay, hk, &span, g, rope);
            let values = head_rows(v, lay, hk, &span, g, None);
            let mut dkeys = vec![0.0; len * d];
            let mut dvalues = vec![0.0; len * d];
            let mut dqueries = vec![0.0; group * len * d];
            let mut ds = vec![0.0; len * len];
            for member in 0..group {
                let head = g * group + member;
                let queries = head_rows(q, lay, h, &span, head, rope);
                let dout_h = head_rows(dout, lay, h, &span, head, None);
                let p = &probs[s * h + head];
                // dV += Pᵀ dO; dP = dO Vᵀ
                matmul(&mut dvalues, member > 0, View::dense(p, len, len).t(), View::dense(&dout_h, len, d));
                matmul(&mut ds, false, View::dense(&dout_h, len, d), View::dense(&values, len, d).t());
                // dS = P ⊙ (dP − rowsum(P ⊙ dP)), times the scale: the gradient of the raw products.
                // A row's dS sums to zero exactly; in f32 the cancellation in `dP − rowsum` leaves a
                // residue, which is taken off the entry of the row's largest probability. burn's
                // softmax (the reference) does the same through the row max it subtracts in the graph,
                // and without it a nearly one-hot row under a large incoming gradient lost up to 1e-4
                // of the largest gradient against f64 (5e-6 with it).
                for (p_row, ds_row) in p.chunks_exact(len).zip(ds.chunks_exact_mut(len)) {
                    let (mut dot, mut top, mut best) = (0.0f32, 0, f32::NEG_INFINITY);
                    for (j, (&pv, &dp)) in p_row.iter().zip(ds_row.iter()).enumerate() {
                        dot += pv * dp;
                        if pv > best {
                            (best, top) = (pv, j);
                        }
                    }
                    for (dsv, &pv) in ds_row.iter_mut().zip(p_row) {
                        *dsv = pv * (*dsv - dot) * lay.scale;
                    }
                    ds_row[top] -= lane_sum(ds_row);
                }
                // dQ = dS K; dK += dSᵀ Q
                let dq_h = &mut dqueries[member * len * d..(member + 1) * len * d];
                matmul(dq_h, false, View::dense(&ds, len, len), View::dense(&keys, len, d));
                matmul(&mut dkeys, member > 0, View::dense(&ds, len, len).t(), View::dense(&queries, len, d));
                if let Some(r) = rope {
                    unrotate_rows(dq_h, r, lay, &span);
                }
            }
            if let Some(r) = rope {
                unrotate_rows(&mut dkeys, r, lay, &span);
            }
            (dqueries, dkeys, dvalues)
        })
        .collect();
    let tokens = lay.batch * lay.len;
    let mut dq = vec![0.0; tokens * h * d];
    let mut dk = vec![0.0; tokens * hk * d];
    let mut dv = vec![0.0; tokens * hk * d];
    for (&(s, g), (dqueries, dkeys, dvalues)) in tasks.iter().zip(results) {
        let span = spans[s];
        put_head_rows(&mut dk, &dkeys, lay, hk, &span, g);
        put_head_rows(&mut dv, &dvalues, lay, hk, &span, g);
        for member in 0..group {
            let dq_h = &dqueries[member * span.len * d..(member + 1) * span.len * d];
            put_head_rows(&mut dq, dq_h, lay, h, &span, g * group + member);
        }
    }
    (dq, dk, dv)
}

/// The sum of `x` in eight lanes (so the loop vectorises), for a correction whose order does not
/// matter.
fn lane_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Undoes RoPE on the gradients of the span's rotated rows `[span.len, d]`, in place.
fn unrotate_rows(rows: &mut [f32], r: &RopeTables, lay: &Layout, span: &Span) {
    let d = lay.head_dim;
    let mut row = vec![0.0; d];
    for j in 0..span.len {
        let at = (span.b * lay.len + span.start + j) * d;
        unrotate(&rows[j * d..(j + 1) * d], &r.cos[at..at + d], &r.sin[at..at + d], &mut row);
        rows[j * d..(j + 1) * d].copy_from_slice(&row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention written out naively in f64 (every row whole, each (query, key) pair masked by
    /// `Visibility::sees`), for the host kernel's own checks; the tensor-op reference twin is
    /// compared in the integration tests.
    fn naive(lay: &Layout, q: &[f32], k: &[f32], v: &[f32], rope: Option<&RopeTables>) -> Vec<f64> {
        let (len, d, h, hk) = (lay.len, lay.head_dim, lay.heads, lay.kv_heads);
        let mut out = vec![0.0; lay.batch * len * h * d];
        for b in 0..lay.batch {
            let row = Span { b, start: 0, len };
            for head in 0..h {
                let g = head / lay.group();
                let qs = head_rows(q, lay, h, &row, head, rope);
                let ks = head_rows(k, lay, hk, &row, g, rope);
                let vs = head_rows(v, lay, hk, &row, g, None);
                for i in 0..len {
                    let seen: Vec<usize> = (0..len).filter(|&j| lay.visibility.sees(b, i, j, len)).collect();
                    let s: Vec<f64> = seen
                        .iter()
                        .map(|&j| (0..d).map(|t| qs[i * d + t] as f64 * ks[j * d + t] as f64).sum::<f64>() * lay.scale as f64)
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for t in 0..d {
                        out[((b * len + i) * h + head) * d + t] = seen.iter().zip(&e).map(|(&j, e)| e / sum * vs[j * d + t] as f64).sum();
                    }
                }
            }
        }
        out
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    fn case(visibility: Visibility) -> (Layout, Vec<f32>, Vec<f32>, Vec<f32>, RopeTables) {
        let lay = Layout {
            batch: 2,
            len: 5,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            visibility,
            scale: 0.5,
        };
        let (b, l, d) = (lay.batch, lay.len, lay.head_dim);
        let rope = RopeTables { cos: data(b * l * d, 7), sin: data(b * l * d, 9) };
        (lay, data(b * l * 4 * d, 1), data(b * l * 2 * d, 2), data(b * l * 2 * d, 3), rope)
    }

    fn causal() -> Visibility {
        Visibility::Causal { lengths: vec![5, 3] }
    }

    /// Row 0: sequences of 2 and 3 tokens; row 1: one of 1, an empty one, one of 2, then padding.
    fn packed() -> Visibility {
        Visibility::Packed { segments: vec![vec![2, 3], vec![1, 0, 2]] }
    }

    #[test]
    fn forward_matches_a_naive_f64_attention() {
        for visibility in [causal(), Visibility::All, packed()] {
            let (lay, q, k, v, rope) = case(visibility.clone());
            let ours = forward(&lay, &q, &k, &v, Some(&rope), false).out;
            let want = naive(&lay, &q, &k, &v, Some(&rope));
            let worst = ours.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-5, "{visibility:?}: worst difference {worst}");
        }
    }

    #[test]
    fn packed_sequences_equal_each_sequence_alone() {
        // Row 0 of `packed()` holds tokens 0..2 and 2..5 as two sequences: each must come out as
        // that sequence alone in a row of its own (same tokens, same RoPE tables).
        let (lay, q, k, v, rope) = case(packed());
        let ours = forward(&lay, &q, &k, &v, Some(&rope), false).out;
        let (h, hk, d) = (lay.heads, lay.kv_heads, lay.head_dim);
        for (start, n) in [(0, 2), (2, 3)] {
            let alone = Layout { batch: 1, len: n, visibility: Visibility::Causal { lengths: vec![n] }, ..lay.clone() };
            let cut = |x: &[f32], width: usize| x[start * width..(start + n) * width].to_vec();
            let rope_alone = RopeTables { cos: cut(&rope.cos, d), sin: cut(&rope.sin, d) };
            let want = forward(&alone, &cut(&q, h * d), &cut(&k, hk * d), &cut(&v, hk * d), Some(&rope_alone), false).out;
            assert_eq!(&ours[start * h * d..(start + n) * h * d], &want[..], "sequence at {start}");
        }
        // Row 1's padding (its last two tokens) gets zeros.
        assert!(ours[(lay.len + 3) * h * d..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn backward_matches_finite_differences() {
        for visibility in [causal(), packed()] {
            backward_case(visibility);
        }
    }

    fn backward_case(visibility: Visibility) {
        let (lay, q, k, v, rope) = case(visibility);
        let dout = data(q.len(), 5);
        let fwd = forward(&lay, &q, &k, &v, Some(&rope), true);
        let (dq, dk, dv) = backward(&lay, &q, &k, &v, Some(&rope), fwd.probs.as_ref().unwrap(), &dout);
        // loss = sum(out * dout), evaluated in f64
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            naive(&lay, q, k, v, Some(&rope)).iter().zip(&dout).map(|(o, g)| o * *g as f64).sum()
        };
        let eps = 1e-3f32;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            for at in (0..grad.len()).step_by(7).chain([grad.len() - 1]) {
                let (mut plus, mut minus) = ([q.clone(), k.clone(), v.clone()], [q.clone(), k.clone(), v.clone()]);
                plus[which][at] += eps;
                minus[which][at] -= eps;
                let numeric = (loss(&plus[0], &plus[1], &plus[2]) - loss(&minus[0], &minus[1], &minus[2])) / (2.0 * eps as f64);
                assert!(
                    (numeric - grad[at] as f64).abs() < 2e-3,
                    "{:?}: input {which} element {at}: analytic {} numeric {numeric}",
                    lay.visibility,
                    grad[at]
                );
            }
        }
    }

    #[test]
    fn a_query_that_sees_no_key_gets_zeros() {
        let (lay, q, k, v, rope) = case(Visibility::Causal { lengths: vec![5, 0] });
        let fwd = forward(&lay, &q, &k, &v, Some(&rope), true);
        let per_sample = lay.len * lay.heads * lay.head_dim;
        assert!(fwd.out[per_sample..].iter().all(|&x| x == 0.0));
        let (dq, dk, dv) = backward(&lay, &q, &k, &v, Some(&rope), fwd.probs.as_ref().unwrap(), &q);
        assert!(dq[per_sample..].iter().all(|&x| x == 0.0));
        let kv = lay.len * lay.kv_heads * lay.head_dim;
        assert!(dk[kv..].iter().chain(&dv[kv..]).all(|&x| x == 0.0));
    }
}
