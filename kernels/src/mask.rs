//! Top-k as a boolean mask with a deterministic tie-break, from pure tensor ops.
//!
//! burn's `topk`/`sort` are unstable on some backends (flex uses `sort_unstable`), so the k-th
//! largest value is used as a threshold: everything strictly above it is kept, and the remaining
//! slots go to the tokens equal to it with the largest indices.

use burn::tensor::{backend::Backend, Bool, Int, Tensor};

/// Marks the `k` largest entries along the last axis of `scores`.
///
/// Ties at the k-th value go to the larger index. Entries equal to `-inf` are never chosen while
/// enough finite entries remain (callers mask excluded tokens with `-inf`).
///
/// # Shapes
/// `scores [.., L] -> mask [.., L]` with exactly `k` true entries per row; `k <= L`.
pub fn topk_mask<B: Backend, const D: usize>(scores: Tensor<B, D>, k: usize) -> Tensor<B, D, Bool> {
    let last = D - 1;
    if k == 0 {
        return scores.zeros_like().bool();
    }
    // k-th largest value per row: [.., 1]. A descending sort rather than `topk`, because burn
    // 0.21's autodiff backend does not implement `topk` and callers select inside the training
    // graph (anchor selection, compression scores).
    let kth = scores.clone().sort_descending(last).narrow(last, k - 1, 1);
    let above = scores.clone().greater(kth.clone().expand(scores.shape()));
    let equal = scores.clone().equal(kth.expand(scores.shape()));
    let n_above = above.clone().int().sum_dim(last);
    let need = n_above.neg().add_scalar(k as i64); // [.., 1], at least 1
    // Rank of each tied entry counted from the right: 1 for the largest index among ties.
    let eq_int = equal.clone().int();
    let total = eq_int.clone().sum_dim(last);
    let from_left = eq_int.cumsum(last); // ties at index <= i
    let from_right = total.expand(scores.shape()) - from_left.clone() + equal.clone().int();
    let take_tied = equal.bool_and(from_right.lower_equal(need.expand(scores.shape())));
    above.bool_or(take_tied)
}

/// Indices of the true entries of `mask`, ascending, when every row has exactly `n` of them.
///
/// # Shapes
/// `mask [B, L] -> indices [B, n]`
pub fn mask_to_sorted_indices<B: Backend>(mask: Tensor<B, 2, Bool>, n: usize) -> Tensor<B, 2, Int> {
    let [b, l] = mask.dims();
    let device = mask.device();
    let idx = Tensor::<B, 1, Int>::arange(0..l as i64, &device).unsqueeze::<2>().expand([b, l]);
    // Unique keys: chosen tokens sort first, by index.
    let key = idx.clone() + mask.bool_not().int().mul_scalar(l as i64);
    let order = key.argsort(1).narrow(1, 0, n);
    idx.gather(1, order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn ties_go_to_the_larger_index() {
        let dev = Default::default();
        let s = Tensor::<Flex, 2>::from_data(TensorData::from([[0.5f32, 0.2, 0.5, 0.5, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]]), &dev);
        let m = topk_mask(s, 2).int().into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(m, vec![0, 0, 1, 1, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn strict_winners_are_always_kept() {
        let dev = Default::default();
        let s = Tensor::<Flex, 2>::from_data(TensorData::from([[0.9f32, 0.2, 0.5, 0.5, 0.1]]), &dev);
        let m = topk_mask(s, 2).int().into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(m, vec![1, 0, 0, 1, 0]);
        let idx = mask_to_sorted_indices(
            Tensor::<Flex, 2>::from_data(TensorData::from([[0.9f32, 0.2, 0.5, 0.5, 0.1]]), &dev).greater_elem(0.3),
            3,
        );
        assert_eq!(idx.into_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![0, 2, 3]);
    }
}
