//! Matrix products over `f32` slices for the host ops, through gemm's register-blocked kernels
//! (the crate burn-flex's own matmul uses): strided views, so a transpose is free.

/// A row-major view of a matrix inside a slice: `rows × cols`, element `(r, c)` at
/// `r * row_stride + c * col_stride` (a transpose swaps the strides).
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether every element lies inside the slice.
    pub fn in_bounds(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst (+)= a · b` for a dense row-major `dst [a.rows × b.cols]` (added to when `accumulate`),
/// through gemm's register-blocked kernels on this thread (for callers that are rayon tasks
/// already).
pub(crate) fn matmul(dst: &mut [f32], accumulate: bool, a: View<'_>, b: View<'_>) {
    matmul_with(dst, accumulate, a, b, gemm::Parallelism::None)
}

/// [`matmul`] split over rayon's threads when the product is large enough to pay for it (the
/// threshold burn-flex's own matmul uses, 192³ multiply-adds).
pub(crate) fn matmul_parallel(dst: &mut [f32], accumulate: bool, a: View<'_>, b: View<'_>) {
    let parallel = a.rows.saturating_mul(a.cols).saturating_mul(b.cols) >= 192 * 192 * 192;
    matmul_with(dst, accumulate, a, b, if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None })
}

fn matmul_with(dst: &mut [f32], accumulate: bool, a: View<'_>, b: View<'_>, parallelism: gemm::Parallelism) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && dst.len() == m * n && a.in_bounds() && b.in_bounds(), "host matmul: operands disagree");
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
            parallelism,
        );
    }
}
