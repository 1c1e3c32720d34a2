//! Pure tensor-op reference twin of [`crate::topk_gather_rows`].

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::mask::topk_mask;
use crate::KernelError;

/// See [`crate::topk_gather_rows`].
///
/// # Shapes
/// `scores [B, Hkv, L]`, `rows [B, Hkv, L, d] -> (kept [B, Hkv, k, d], indices [B, Hkv, k])`
pub fn topk_gather_rows<B: Backend>(
    scores: Tensor<B, 3>,
    rows: Tensor<B, 4>,
    k: usize,
) -> Result<(Tensor<B, 4>, Tensor<B, 3, Int>), KernelError> {
    let [b, h, l] = scores.dims();
    let [rb, rh, rl, d] = rows.dims();
    if (rb, rh, rl) != (b, h, l) {
        return Err(KernelError::Shape {
            what: "topk_gather_rows rows",
            expected: format!("[{b}, {h}, {l}, d] (scores {:?})", scores.dims()),
            found: vec![rb, rh, rl, d],
        });
    }
    if k > l {
        return Err(KernelError::TooFew { what: "topk_gather_rows", asked: k, available: l, shape: vec![b, h, l] });
    }
    let device = scores.device();
    let keep = topk_mask(scores, k); // [B, H, L]
    // Kept rows sort first (ascending index), then the rest: unique integer keys.
    let idx = Tensor::<B, 1, Int>::arange(0..l as i64, &device).reshape([1, 1, l]).expand([b, h, l]);
    let key = idx.clone() + keep.bool_not().int().mul_scalar(l as i64);
    let indices = idx.gather(2, key.argsort(2).narrow(2, 0, k));
    let kept = rows.gather(2, indices.clone().unsqueeze_dim::<4>(3).expand([b, h, k, d]));
    Ok((kept, indices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn keeps_best_rows_in_original_order() {
        let dev = Default::default();
        // B=1, H=2, L=4, d=2
        let scores = Tensor::<Flex, 3>::from_data(TensorData::new(vec![0.1f32, 0.9, 0.5, 0.7, 3.0, 2.0, 1.0, 0.0], [1, 2, 4]), &dev);
        let rows = Tensor::<Flex, 4>::from_data(TensorData::new((0..16).map(|v| v as f32).collect::<Vec<_>>(), [1, 2, 4, 2]), &dev);
        let (kept, idx) = topk_gather_rows(scores, rows, 2).unwrap();
        assert_eq!(idx.into_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![1, 3, 0, 1]);
        assert_eq!(kept.into_data().to_vec::<f32>().unwrap(), vec![2., 3., 6., 7., 8., 9., 10., 11.]);
    }

    #[test]
    fn refuses_mismatched_rows() {
        let dev = Default::default();
        let r = topk_gather_rows(Tensor::<Flex, 3>::zeros([1, 2, 4], &dev), Tensor::<Flex, 4>::zeros([1, 2, 5, 3], &dev), 2);
        assert!(matches!(r, Err(KernelError::Shape { .. })));
    }
}
