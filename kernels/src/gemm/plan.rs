//! How burn's row-major batched product `a [.., m, k] · b [.., k, n]`, with whatever strides its
//! operands have, maps onto one column-major strided-batched GEMM call (the argument list of
//! cuBLAS's `cublasGemmStridedBatchedEx`), or why it does not.
//!
//! cuBLAS reads every matrix column-major. A row-major `[m, n]` output is the column-major
//! `[n, m]` matrix `cᵀ = bᵀ aᵀ`, so the call takes our right operand as its `A` and our left one
//! as its `B`, with cuBLAS's `m = n`, `n = m`. A row-major operand read column-major is already
//! transposed (operation `N`); a column-major one (a `swap_dims` view, strides `[1, ld]`) needs
//! operation `T`. Batch dimensions flatten into one stride when they are laid out uniformly; an
//! operand whose batch dimensions are all 1 is broadcast with stride 0 (burn's `linear` multiplies
//! `[batch, len, d]` by the weight as `[1, d, n]`). Anything else (a partly broadcast batch, batch
//! dimensions that do not flatten, a leading dimension below the matrix's height) gets `None`, and
//! the caller copies the operand contiguous or runs burn's own product.
//!
//! The output is written contiguous (`[.., m, n]`, row stride `n`). This module is pure
//! arithmetic: [`emulate`] runs a call on host slices with cuBLAS's semantics, and the tests check
//! that every plan computes `a · b`.

/// A cuBLAS operation on an operand: as stored (`N`) or transposed (`T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

/// One column-major strided-batched GEMM: `C_i = op(A_i) · op(B_i)` for `i < batch`, with
/// `A_i` at `stride_a · i` (cuBLAS's `A` is our right operand `b`, its `B` our left operand `a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemmCall {
    pub op_a: Op,
    pub op_b: Op,
    /// cuBLAS's `m`: our `n`.
    pub m: usize,
    /// cuBLAS's `n`: our `m`.
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    /// Elements between batch entries of `A` (our `b`); 0 when it is broadcast.
    pub stride_a: usize,
    /// Elements between batch entries of `B` (our `a`); 0 when it is broadcast.
    pub stride_b: usize,
    pub stride_c: usize,
    pub batch: usize,
    /// The output's shape (row-major, contiguous): the broadcast batch dimensions, then `[m, n]`.
    pub out_shape: Vec<usize>,
}

/// One operand's shape and strides (in elements), batch dimensions first.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub shape: &'a [usize],
    pub strides: &'a [usize],
}

/// How a `rows x cols` matrix with strides `(row_stride, col_stride)` reads as a column-major
/// matrix: `(Op::N, ld)` when it is row-major (its column-major reading is its transpose), `(Op::T,
/// ld)` when it is column-major; `None` when it is neither (or `ld` would be below what cuBLAS
/// accepts). A dimension of size 1 accepts any stride.
fn matrix(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<(Op, usize)> {
    if cols == 1 || col_stride == 1 {
        // Row-major: element (r, c) at r * ld + c; ld >= cols.
        let ld = if rows == 1 { cols.max(1) } else { row_stride };
        if ld >= cols.max(1) {
            return Some((Op::N, ld));
        }
    }
    if rows == 1 || row_stride == 1 {
        // Column-major: element (r, c) at r + c * ld; ld >= rows.
        let ld = if cols == 1 { rows.max(1) } else { col_stride };
        if ld >= rows.max(1) {
            return Some((Op::T, ld));
        }
    }
    None
}

/// The one stride that steps through `shape`'s batch dimensions in row-major order, if there is
/// one (0 when they hold one entry).
fn batch_stride(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let mut stride = None::<usize>;
    let mut span = 1usize;
    for (&size, &step) in shape.iter().zip(strides).rev() {
        if size == 1 {
            continue;
        }
        match stride {
            None => stride = Some(step),
            Some(inner) => {
                if step != inner.checked_mul(span)? {
                    return None;
                }
            }
        }
        span = span.checked_mul(size)?;
    }
    Some(stride.unwrap_or(0))
}

/// The call computing `a · b` (burn's `matmul`: equal ranks ≥ 2, batch dimensions equal or
/// broadcast from all-ones), or `None` where one call cannot (see the module doc).
pub fn plan(a: Operand<'_>, b: Operand<'_>) -> Option<GemmCall> {
    let rank = a.shape.len();
    if rank < 2 || b.shape.len() != rank || a.strides.len() != rank || b.strides.len() != rank {
        return None;
    }
    let (m, k) = (a.shape[rank - 2], a.shape[rank - 1]);
    let (kb, n) = (b.shape[rank - 2], b.shape[rank - 1]);
    if k != kb || m == 0 || n == 0 || k == 0 {
        return None;
    }
    let (a_batch, b_batch) = (&a.shape[..rank - 2], &b.shape[..rank - 2]);
    let a_count: usize = a_batch.iter().product();
    let b_count: usize = b_batch.iter().product();
    let out_batch: Vec<usize> = if a_batch == b_batch || b_count == 1 {
        a_batch.to_vec()
    } else if a_count == 1 {
        b_batch.to_vec()
    } else {
        return None;
    };
    let batch: usize = out_batch.iter().product();
    let stride_of = |o: Operand<'_>, count: usize| if count == 1 { Some(0) } else { batch_stride(&o.shape[..rank - 2], &o.strides[..rank - 2]) };
    let stride_b = stride_of(a, a_count)?;
    let stride_a = stride_of(b, b_count)?;
    let (op_b, ldb) = matrix(m, k, a.strides[rank - 2], a.strides[rank - 1])?;
    let (op_a, lda) = matrix(k, n, b.strides[rank - 2], b.strides[rank - 1])?;
    let mut out_shape = out_batch;
    out_shape.extend([m, n]);
    Some(GemmCall { op_a, op_b, m: n, n: m, k, lda, ldb, ldc: n, stride_a, stride_b, stride_c: m * n, batch, out_shape })
}

impl GemmCall {
    /// Whether every size, leading dimension and batch count fits cuBLAS's 32-bit `int` (strides
    /// are 64-bit).
    pub fn fits_i32(&self) -> bool {
        [self.m, self.n, self.k, self.lda, self.ldb, self.ldc, self.batch].iter().all(|&v| v <= i32::MAX as usize)
    }
}

/// Runs `call` on host slices exactly as cuBLAS defines it (`alpha = 1`, `beta = 0`), in f64:
/// `a_buf` holds cuBLAS's `A` (our right operand), `b_buf` its `B` (our left one). Returns `C`,
/// `batch * stride_c` elements. For tests.
pub fn emulate(call: &GemmCall, a_buf: &[f64], b_buf: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; call.batch * call.stride_c];
    for i in 0..call.batch {
        let (a0, b0, c0) = (i * call.stride_a, i * call.stride_b, i * call.stride_c);
        // op(A) is m x k, op(B) is k x n, C is m x n; element (r, c) of a stored matrix at r + c * ld.
        let a_at = |r: usize, l: usize| match call.op_a {
            Op::N => a_buf[a0 + r + l * call.lda],
            Op::T => a_buf[a0 + l + r * call.lda],
        };
        let b_at = |l: usize, col: usize| match call.op_b {
            Op::N => b_buf[b0 + l + col * call.ldb],
            Op::T => b_buf[b0 + col + l * call.ldb],
        };
        for col in 0..call.n {
            for r in 0..call.m {
                c[c0 + r + col * call.ldc] = (0..call.k).map(|l| a_at(r, l) * b_at(l, col)).sum();
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided operand: `shape`, `strides`, and a buffer holding a distinct value at every
    /// reachable offset (the value of element `idx` is a function of `idx`).
    struct Strided {
        shape: Vec<usize>,
        strides: Vec<usize>,
        buf: Vec<f64>,
    }

    impl Strided {
        fn new(shape: &[usize], strides: &[usize], seed: f64) -> Self {
            let len = shape.iter().zip(strides).map(|(&s, &st)| (s.max(1) - 1) * st).sum::<usize>() + 1;
            // Unreached slots hold NaN, so a plan that reads outside the operand poisons the result.
            let mut buf = vec![f64::NAN; len];
            for_each_index(shape, |idx| {
                let off: usize = idx.iter().zip(strides).map(|(i, s)| i * s).sum();
                let flat = idx.iter().fold(0usize, |acc, &i| acc * 31 + i) as f64;
                buf[off] = ((flat * 0.37 + seed).sin() * 4.0).round() / 4.0;
            });
            Self { shape: shape.to_vec(), strides: strides.to_vec(), buf }
        }

        fn at(&self, idx: &[usize]) -> f64 {
            // Broadcast: an index past a size-1 dimension reads index 0.
            let off: usize = idx.iter().zip(&self.shape).zip(&self.strides).map(|((&i, &s), &st)| if s == 1 { 0 } else { i * st }).sum();
            self.buf[off]
        }

        fn operand(&self) -> Operand<'_> {
            Operand { shape: &self.shape, strides: &self.strides }
        }
    }

    fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
        let total: usize = shape.iter().product();
        let mut idx = vec![0; shape.len()];
        for _ in 0..total {
            f(&idx);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }

    fn contiguous(shape: &[usize]) -> Vec<usize> {
        let mut strides = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1].max(1);
        }
        strides
    }

    /// Strides of a row-major buffer of `stored` shape read with dimensions `d1`, `d2` swapped.
    fn swapped(stored: &[usize], d1: usize, d2: usize) -> (Vec<usize>, Vec<usize>) {
        let mut shape = stored.to_vec();
        let mut strides = contiguous(stored);
        shape.swap(d1, d2);
        strides.swap(d1, d2);
        (shape, strides)
    }

    /// Plans `a · b`, runs the plan with cuBLAS's semantics and compares with the product read
    /// straight from the strided operands.
    fn check(a: &Strided, b: &Strided) {
        let call = plan(a.operand(), b.operand()).unwrap_or_else(|| panic!("no plan for a {:?}/{:?}, b {:?}/{:?}", a.shape, a.strides, b.shape, b.strides));
        let c = emulate(&call, &b.buf, &a.buf);
        let rank = a.shape.len();
        let (m, k, n) = (a.shape[rank - 2], a.shape[rank - 1], b.shape[rank - 1]);
        assert_eq!(call.out_shape[rank - 2..], [m, n]);
        let out_strides = contiguous(&call.out_shape);
        for_each_index(&call.out_shape, |idx| {
            let mut ai = idx.to_vec();
            let mut bi = idx.to_vec();
            let want: f64 = (0..k)
                .map(|l| {
                    ai[rank - 1] = l;
                    bi[rank - 2] = l;
                    bi[rank - 1] = idx[rank - 1];
                    a.at(&ai) * b.at(&bi)
                })
                .sum();
            let off: usize = idx.iter().zip(&out_strides).map(|(i, s)| i * s).sum();
            assert_eq!(c[off], want, "a {:?}/{:?} b {:?}/{:?} at {idx:?}", a.shape, a.strides, b.shape, b.strides);
        });
        assert_eq!(c.len(), call.batch * m * n);
    }

    #[test]
    fn contiguous_products_of_every_rank() {
        for (sa, sb) in [(vec![3, 5], vec![5, 4]), (vec![2, 3, 5], vec![2, 5, 4]), (vec![2, 3, 4, 5], vec![2, 3, 5, 2])] {
            check(&Strided::new(&sa, &contiguous(&sa), 0.1), &Strided::new(&sb, &contiguous(&sb), 0.7));
        }
    }

    #[test]
    fn transposed_operands_take_op_t() {
        // b = wᵀ of a stored [n, k] weight (linear's backward), a = xᵀ of a stored [k, m].
        let (bs, bst) = swapped(&[4, 5], 0, 1);
        let b = Strided::new(&bs, &bst, 0.3);
        let a = Strided::new(&[3, 5], &contiguous(&[3, 5]), 0.2);
        assert_eq!(plan(a.operand(), b.operand()).unwrap().op_a, Op::T);
        check(&a, &b);
        let (as_, ast) = swapped(&[2, 5, 3], 1, 2);
        let a = Strided::new(&as_, &ast, 0.9);
        let b = Strided::new(&[2, 5, 4], &contiguous(&[2, 5, 4]), 0.4);
        assert_eq!(plan(a.operand(), b.operand()).unwrap().op_b, Op::T);
        check(&a, &b);
    }

    #[test]
    fn attention_products_over_batch_and_heads() {
        // q kᵀ: q [b, h, l, d] contiguous, kᵀ a swap_dims(2, 3) view of k [b, h, l, d].
        let q = Strided::new(&[2, 3, 4, 5], &contiguous(&[2, 3, 4, 5]), 0.5);
        let (ks, kst) = swapped(&[2, 3, 6, 5], 2, 3);
        check(&q, &Strided::new(&ks, &kst, 0.6));
        // p v with v a [b, l, h, d] buffer read as [b, h, l, d] (the projection's reshape + swap):
        // its batch dimensions do not flatten, so there is no single call.
        let (vs, vst) = swapped(&[2, 6, 3, 5], 1, 2);
        let p = Strided::new(&[2, 3, 4, 6], &contiguous(&[2, 3, 4, 6]), 0.8);
        assert!(plan(p.operand(), Strided::new(&vs, &vst, 0.1).operand()).is_none());
        // With one head the same view flattens.
        let (vs, vst) = swapped(&[2, 6, 1, 5], 1, 2);
        check(&Strided::new(&[2, 1, 4, 6], &contiguous(&[2, 1, 4, 6]), 0.8), &Strided::new(&vs, &vst, 0.1));
    }

    #[test]
    fn a_weight_of_batch_one_is_broadcast_with_stride_zero() {
        let x = Strided::new(&[3, 4, 5], &contiguous(&[3, 4, 5]), 0.1);
        let w = Strided::new(&[1, 5, 6], &contiguous(&[1, 5, 6]), 0.2);
        let call = plan(x.operand(), w.operand()).unwrap();
        assert_eq!((call.stride_a, call.batch), (0, 3));
        check(&x, &w);
        // The transposed weight of linear's backward, broadcast too; and the broadcast on the left.
        let (ws, wst) = swapped(&[1, 6, 5], 1, 2);
        check(&x, &Strided::new(&ws, &wst, 0.3));
        check(&Strided::new(&[1, 4, 5], &contiguous(&[1, 4, 5]), 0.4), &Strided::new(&[3, 5, 6], &contiguous(&[3, 5, 6]), 0.5));
        // An expanded (stride 0) batch dimension of size > 1 is also a broadcast.
        check(&x, &Strided::new(&[3, 5, 6], &[0, 6, 1], 0.6));
    }

    #[test]
    fn padded_rows_and_size_one_dimensions() {
        // A row pitch above the width (CUDA's pitched allocations), a vector times a matrix, a
        // matrix times a vector, and strides that do not matter on size-1 dimensions.
        check(&Strided::new(&[3, 5], &[8, 1], 0.1), &Strided::new(&[5, 4], &[16, 1], 0.2));
        check(&Strided::new(&[1, 5], &[0, 1], 0.3), &Strided::new(&[5, 4], &contiguous(&[5, 4]), 0.4));
        check(&Strided::new(&[3, 5], &contiguous(&[3, 5]), 0.5), &Strided::new(&[5, 1], &[1, 7], 0.6));
        check(&Strided::new(&[1, 3, 1], &[99, 1, 42], 0.7), &Strided::new(&[1, 1, 4], &[5, 0, 1], 0.8));
    }

    #[test]
    fn what_one_call_cannot_do_is_refused() {
        let c = |shape: &[usize]| contiguous(shape);
        // Partly broadcast batches, mismatched inner sizes or ranks, empty products, overlapping rows.
        assert!(plan(Operand { shape: &[2, 1, 3, 4], strides: &c(&[2, 1, 3, 4]) }, Operand { shape: &[1, 2, 4, 5], strides: &c(&[1, 2, 4, 5]) }).is_none());
        assert!(plan(Operand { shape: &[3, 4], strides: &c(&[3, 4]) }, Operand { shape: &[5, 2], strides: &c(&[5, 2]) }).is_none());
        assert!(plan(Operand { shape: &[2, 3, 4], strides: &c(&[2, 3, 4]) }, Operand { shape: &[4, 2], strides: &c(&[4, 2]) }).is_none());
        assert!(plan(Operand { shape: &[0, 4], strides: &[4, 1] }, Operand { shape: &[4, 2], strides: &c(&[4, 2]) }).is_none());
        assert!(plan(Operand { shape: &[3, 4], strides: &[2, 1] }, Operand { shape: &[4, 2], strides: &c(&[4, 2]) }).is_none());
        // Neither row- nor column-major inner strides.
        assert!(plan(Operand { shape: &[3, 4], strides: &[8, 2] }, Operand { shape: &[4, 2], strides: &c(&[4, 2]) }).is_none());
    }

    #[test]
    fn sizes_past_i32_are_flagged() {
        let call = plan(Operand { shape: &[3, 4], strides: &[4, 1] }, Operand { shape: &[4, 2], strides: &[2, 1] }).unwrap();
        assert!(call.fits_i32());
        assert!(!GemmCall { batch: 1 << 31, ..call }.fits_i32());
    }
}
