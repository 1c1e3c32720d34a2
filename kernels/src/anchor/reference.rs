//! Pure tensor-op reference twin of the anchor ops: batched over samples, `H` iterations of
//! batched ops over heads (no host loop over samples, no host round-trip).
//!
//! AcFormer (liuhaogeng/Anchor-Former `clip_encoder.py` l.42–58) grows, per sample and head, the
//! head's window `argsort(a)[-(p+c):]` until it adds `p` tokens not chosen before. That is the same
//! set as the head's top-p over the tokens not chosen yet, which is what this twin computes: mask
//! the chosen tokens with `-inf`, take a top-p mask, OR it in.

use burn::tensor::{backend::Backend, Int, Tensor};

use crate::mask::{mask_to_sorted_indices, topk_mask};
use crate::KernelError;

/// See [`crate::select_anchors`].
///
/// # Shapes
/// `cls_attention [B, H, T] -> indices [B, count + 1]`
pub fn select_anchors<B: Backend>(cls_attention: Tensor<B, 3>, count: usize) -> Result<Tensor<B, 2, Int>, KernelError> {
    select_anchors_with_heads(cls_attention, count).map(|(indices, _)| indices)
}

/// [`select_anchors`] that also says which head chose each anchor (`-1` for CLS), for display.
///
/// # Shapes
/// `cls_attention [B, H, T] -> (indices [B, count + 1], heads [B, count + 1])`
pub fn select_anchors_with_heads<B: Backend>(cls_attention: Tensor<B, 3>, count: usize) -> Result<super::AnchorsAndHeads<B>, KernelError> {
    let [batch, heads, tokens] = cls_attention.dims();
    let shape = vec![batch, heads, tokens];
    if heads == 0 || count % heads != 0 {
        return Err(KernelError::CountNotMultipleOfHeads { count, heads, shape });
    }
    if count > tokens.saturating_sub(1) {
        return Err(KernelError::TooFew { what: "select_anchors", asked: count, available: tokens.saturating_sub(1), shape });
    }
    let per_head = count / heads;
    let device = cls_attention.device();
    // chosen [B, T]: CLS (token 0) is always an anchor and never competes.
    let mut chosen = Tensor::<B, 2, Int>::zeros([batch, tokens], &device)
        .slice_assign([0..batch, 0..1], Tensor::ones([batch, 1], &device))
        .bool();
    // owner [B, T]: 1 + the head that chose the token (0: CLS or not chosen).
    let mut owner = Tensor::<B, 2, Int>::zeros([batch, tokens], &device);
    for h in 0..heads {
        let scores = cls_attention.clone().narrow(1, h, 1).reshape([batch, tokens]);
        let scores = scores.mask_fill(chosen.clone(), f32::NEG_INFINITY);
        let new = topk_mask(scores, per_head);
        owner = owner + new.clone().int().mul_scalar((h + 1) as i64);
        chosen = chosen.bool_or(new);
    }
    let indices = mask_to_sorted_indices(chosen, count + 1);
    let head_of = owner.gather(1, indices.clone()).sub_scalar(1);
    Ok((indices, head_of))
}

/// See [`crate::gather_tokens`].
///
/// # Shapes
/// `tokens [B, T, D]`, `indices [B, N] -> [B, N, D]`
pub fn gather_tokens<B: Backend>(tokens: Tensor<B, 3>, indices: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, KernelError> {
    let [b, _t, d] = tokens.dims();
    let [bi, n] = indices.dims();
    if bi != b {
        return Err(KernelError::Shape { what: "gather_tokens indices", expected: format!("[{b}, N] (batch of tokens {:?})", tokens.dims()), found: vec![bi, n] });
    }
    let idx = indices.unsqueeze_dim::<3>(2).expand([b, n, d]);
    Ok(tokens.gather(1, idx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// AcFormer's host loop, transcribed: grow the head's window until it adds `p` new tokens.
    fn host_loop(att: &[Vec<Vec<f32>>], count: usize) -> Vec<Vec<i64>> {
        att.iter()
            .map(|heads| {
                let p = count / heads.len();
                let mut s: std::collections::BTreeSet<usize> = [0].into();
                for (h, row) in heads.iter().enumerate() {
                    // ascending order of the patch tokens (1..), ties by index (stable).
                    let mut order: Vec<usize> = (1..row.len()).collect();
                    order.sort_by(|a, b| row[*a].partial_cmp(&row[*b]).unwrap());
                    let mut c = 0;
                    loop {
                        let mut cand = s.clone();
                        cand.extend(order[order.len() - (p + c)..].iter().copied());
                        if cand.len() >= h * p + p + 1 {
                            s = cand;
                            break;
                        }
                        c += 1;
                    }
                }
                s.into_iter().map(|i| i as i64).collect()
            })
            .collect()
    }

    fn seeded(b: usize, h: usize, t: usize, seed: u64) -> Vec<Vec<Vec<f32>>> {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) as f32) / (1u64 << 31) as f32
        };
        (0..b).map(|_| (0..h).map(|_| (0..t).map(|_| next()).collect()).collect()).collect()
    }

    #[test]
    fn matches_acformer_host_loop_on_random_attention() {
        let dev = Default::default();
        for (b, h, t, count, seed) in [(3, 4, 37, 8, 1), (2, 16, 145, 144, 2), (4, 2, 10, 8, 3), (2, 16, 577, 256, 4)] {
            let att = seeded(b, h, t, seed);
            let flat: Vec<f32> = att.iter().flatten().flatten().copied().collect();
            let tensor = Tensor::<Flex, 3>::from_data(TensorData::new(flat, [b, h, t]), &dev);
            let got = select_anchors(tensor, count).unwrap().into_data().convert::<i64>().to_vec::<i64>().unwrap();
            let want: Vec<i64> = host_loop(&att, count).into_iter().flatten().collect();
            assert_eq!(got, want, "b={b} h={h} t={t} count={count}");
        }
    }

    #[test]
    fn ties_choose_the_larger_index_like_a_stable_ascending_sort() {
        let dev = Default::default();
        // One head, all patch scores equal: the last two tokens win.
        let t = Tensor::<Flex, 3>::from_data(TensorData::new(vec![9.0f32, 1.0, 1.0, 1.0, 1.0], [1, 1, 5]), &dev);
        let got = select_anchors(t, 2).unwrap().into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(got, vec![0, 3, 4]);
        let att = vec![vec![vec![9.0f32, 1.0, 1.0, 1.0, 1.0]]];
        assert_eq!(host_loop(&att, 2), vec![vec![0, 3, 4]]);
    }

    #[test]
    fn reports_the_head_that_chose_each_anchor() {
        let dev = Default::default();
        // Two heads, one anchor each: head 0 prefers token 2, head 1 prefers token 2 then 3.
        let t = Tensor::<Flex, 3>::from_data(TensorData::new(vec![0.0f32, 0.1, 0.9, 0.2, 0.0, 0.1, 0.9, 0.5], [1, 2, 4]), &dev);
        let (idx, heads) = select_anchors_with_heads(t, 2).unwrap();
        assert_eq!(idx.into_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![0, 2, 3]);
        assert_eq!(heads.into_data().convert::<i64>().to_vec::<i64>().unwrap(), vec![-1, 0, 1]);
    }

    #[test]
    fn refuses_counts_that_do_not_split_over_heads() {
        let t = Tensor::<Flex, 3>::zeros([1, 4, 20], &Default::default());
        assert!(matches!(select_anchors(t.clone(), 6), Err(KernelError::CountNotMultipleOfHeads { .. })));
        assert!(matches!(select_anchors(t, 20), Err(KernelError::TooFew { .. })));
    }

    #[test]
    fn gather_picks_rows_and_backpropagates_as_scatter_add() {
        use burn::backend::Autodiff;
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x = Tensor::<A, 3>::from_data(TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [1, 4, 3]), &dev).require_grad();
        let idx = Tensor::<A, 2, Int>::from_data(TensorData::new(vec![0i64, 2, 2], [1, 3]), &dev);
        let y = gather_tokens(x.clone(), idx).unwrap();
        assert_eq!(y.to_data().to_vec::<f32>().unwrap(), vec![0., 1., 2., 6., 7., 8., 6., 7., 8.]);
        let g = y.sum().backward();
        let gx = x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        assert_eq!(gx, vec![1., 1., 1., 0., 0., 0., 2., 2., 2., 0., 0., 0.]);
    }
}
