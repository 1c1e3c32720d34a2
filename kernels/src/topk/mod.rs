//! Top-k by score + gather of rows, for key/value or hidden-state compression. The public function
//! is the dispatch point: CubeCL kernels on burn's CubeCL backends (features `wgpu` / `cuda`), the
//! pure tensor-op [`reference`] twin elsewhere (flex).

pub mod reference;

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::KernelError;

/// Keeps, per batch and head, the `k` rows with the largest score, in their original order.
///
/// Tie-break: the larger row index. Differentiable in `rows` (the backward is a scatter-add).
///
/// Kernel path: the top-k indices come from the selection kernel; the rows are gathered by the
/// vectorised row-gather kernel on a plain backend and by burn's `gather` op (scatter-add backward)
/// under `Autodiff`.
///
/// # Shapes
/// `scores [B, Hkv, L]`, `rows [B, Hkv, L, d] -> (kept [B, Hkv, k, d], indices [B, Hkv, k])`
pub fn topk_gather_rows<B: Backend>(
    scores: Tensor<B, 3>,
    rows: Tensor<B, 4>,
    k: usize,
) -> Result<(Tensor<B, 4>, Tensor<B, 3, Int>), KernelError> {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    {
        let [b, h, l] = scores.dims();
        let [rb, rh, rl, d] = rows.dims();
        if (rb, rh, rl) == (b, h, l) && k <= l {
            if let Some(indices) = crate::cube::topk_indices(&scores, k) {
                let flat_rows = rows.clone().reshape([b * h, l, d]);
                let kept = match crate::cube::gather_rows(&flat_rows, &indices.clone().reshape([b * h, k])) {
                    Some(kept) => kept.reshape([b, h, k, d]),
                    None => rows.gather(2, indices.clone().unsqueeze_dim::<4>(3).expand([b, h, k, d])),
                };
                return Ok((kept, indices));
            }
        }
    }
    reference::topk_gather_rows(scores, rows, k)
}
