//! Turning a hook's [`LayerRequest`] into a layer's [`AttnPlan`]: the key/value restriction
//! (gather index), the key/value pooling (weights), the masks over the attended keys and the rows
//! to report, after checking the request against the current layout.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::attention::{AttnPlan, KeyMask};
use crate::hook_error::{BadRequest, HookError};
use crate::hooks::{KvAccess, LayerRequest, SeqLayout};
use crate::model::Llm;

impl<B: Backend> Llm<B> {
    /// Builds one layer's attention plan from the hook's request.
    pub(crate) fn plan(
        &self,
        layer: usize,
        layout: &SeqLayout,
        request: &LayerRequest,
        valid: &Tensor<B, 2, Bool>,
        padded: bool,
        caching: bool,
    ) -> Result<AttnPlan<B>, HookError> {
        let device = valid.device();
        let batch = layout.samples.len();
        let len = layout.padded_len;
        let heads = self.config.num_attention_heads;
        let mut plan = AttnPlan::causal();
        if caching {
            plan.key_valid = Some(valid.clone());
        }
        if matches!(request.kv, KvAccess::Pool(_)) && request.rows.is_some() {
            return Err(BadRequest::at(layer, "kv pool", "cannot be combined with rows at the same layer".into()));
        }
        // Per attended key slot: the current index it may be seen from (causality) and whether it
        // is real; ragged slot counts are padded with invalid filler.
        let slots = match &request.kv {
            KvAccess::Keep(keep) => {
                check_positions(layer, layout, keep, "kv keep")?;
                let kept_len = keep.iter().map(Vec::len).max().unwrap_or(0).max(1);
                let mut gather = Vec::with_capacity(batch * kept_len);
                for kept in keep {
                    let filler = kept.last().copied().unwrap_or(0);
                    gather.extend((0..kept_len).map(|m| kept.get(m).copied().unwrap_or(filler) as i64));
                }
                let index: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(gather, [batch, kept_len]), &device);
                plan.kv_index = Some(index.clone());
                let counts = keep.iter().map(Vec::len).collect::<Vec<_>>();
                Some((index, counts, kept_len))
            }
            KvAccess::Pool(pool) => {
                check_groups(layer, layout, pool)?;
                let (weights, last, count) = pool_weights(pool, len);
                plan.kv_pool = Some(Tensor::from_data(TensorData::new(weights, [batch, count, len]), &device));
                let last: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(last, [batch, count]), &device);
                let counts = pool.iter().map(Vec::len).collect::<Vec<_>>();
                Some((last, counts, count))
            }
            KvAccess::All => None,
        };
        if slots.is_none() {
            plan.prefix_lengths = Some(layout.samples.iter().map(|s| s.len()).collect());
            if anchorage_kernels::attention::runs_fused::<B>() {
                // The fused attention reads the lengths; a tensor-op fallback (another dtype,
                // rows, the cache) masks with the broadcast forms below.
                if padded {
                    plan.mask = KeyMask::CausalValid(valid.clone());
                }
            } else if fits_dense([batch, heads, len, len]) {
                plan.mask = KeyMask::Dense(dense_causal_mask(layout, heads, &device));
            } else if padded {
                plan.mask = KeyMask::CausalValid(valid.clone());
            }
        }
        if let Some((key_at, counts, count)) = slots {
            let key_valid: Vec<bool> = counts.iter().flat_map(|&n| (0..count).map(move |m| m < n)).collect();
            let key_valid: Tensor<B, 2, Bool> = Tensor::from_data(TensorData::new(key_valid, [batch, count]), &device);
            // masked where the slot's last member comes after the query (causal by current index)
            // or the slot is filler; built on the device so long sequences cost no host work.
            let shape = [batch, len, count];
            let key_at = key_at.reshape([batch, 1, count]).expand(shape);
            let query_at = Tensor::<B, 1, Int>::arange(0..len as i64, &device).reshape([1, len, 1]).expand(shape);
            let filler = key_valid.clone().bool_not().reshape([batch, 1, count]).expand(shape);
            let mask = key_at.greater(query_at).bool_or(filler);
            let per_head = [batch, heads, len, count];
            plan.mask = if fits_dense(per_head) {
                // One copy into `[batch, heads, len, slots]` order for all the layers that reuse
                // the plan, instead of one in every masking op forward and backward.
                KeyMask::Dense(mask.unsqueeze_dim::<4>(1).expand(per_head).reshape([batch * heads, len, count]).reshape(per_head))
            } else {
                KeyMask::Explicit(mask)
            };
            if caching {
                plan.key_valid = Some(key_valid);
            }
        }
        if let Some(rows) = &request.rows {
            check_positions(layer, layout, rows, "rows")?;
            let kept = match &request.kv {
                KvAccess::Keep(keep) => Some(keep.as_slice()),
                _ => None,
            };
            plan.rows = Some(rows_plan(layout, rows, kept, &device));
            // head-mean rows need every key: project all rows, gather afterwards.
            plan.project_all_kv = true;
        }
        Ok(plan)
    }
}

/// Masks with at most this many elements (`batch * heads * queries * keys`; 16 MiB of bools) are
/// built dense, in the attention scores' own `[batch, heads, queries, keys]` order. burn's
/// attention without a fused kernel (every autodiff backend, so all training) masks the scores
/// with `mask_fill`, and a mask broadcast over heads (or its causal mask, broadcast over batch
/// and heads) is first copied dense by CPU backends (burn-flex) one index at a time, in the
/// forward pass and again in the backward pass, for every layer: about an eighth of the demo
/// LLM's training step. Larger masks (long sequences on a GPU) keep the broadcast forms and the
/// backends' causal path.
const DENSE_MASK_ELEMENTS: usize = 1 << 24;

/// Whether a mask of `[batch, heads, queries, keys]` is built dense ([`DENSE_MASK_ELEMENTS`]).
fn fits_dense(shape: [usize; 4]) -> bool {
    shape.iter().product::<usize>() <= DENSE_MASK_ELEMENTS
}

/// The causal mask of a right-padded batch over all its current keys, `[batch, heads, len,
/// len]`, true = masked: the key comes after the query or is padding (what `is_causal` plus
/// [`KeyMask::CausalValid`] mask).
fn dense_causal_mask<B: Backend>(layout: &SeqLayout, heads: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let (batch, len) = (layout.samples.len(), layout.padded_len);
    let mut mask = Vec::with_capacity(batch * heads * len * len);
    for sample in &layout.samples {
        let n = sample.len();
        let start = mask.len();
        for q in 0..len {
            mask.extend((0..len).map(|k| k > q || k >= n));
        }
        for _ in 1..heads {
            mask.extend_from_within(start..start + len * len);
        }
    }
    Tensor::from_data(TensorData::new(mask, [batch, heads, len, len]), device)
}

/// The query index `[batch, rows]` of the requested rows (a sample's last request repeated up to
/// the longest list) and their mask over all current keys `[batch, rows, len]` (true = masked:
/// after the query, padding, or outside the sample's kept keys).
fn rows_plan<B: Backend>(
    layout: &SeqLayout,
    rows: &[Vec<usize>],
    kept: Option<&[Vec<usize>]>,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 3, Bool>) {
    let (batch, len) = (rows.len(), layout.padded_len);
    let count = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut index = Vec::with_capacity(batch * count);
    let mut mask = Vec::with_capacity(batch * count * len);
    for (b, wanted) in rows.iter().enumerate() {
        let n = layout.samples[b].len();
        let kept = kept.map(|k| &k[b]);
        for r in 0..count {
            let q = wanted.get(r).or(wanted.last()).copied().unwrap_or(0);
            index.push(q as i64);
            for k in 0..len {
                let hidden_key = kept.is_some_and(|kept| kept.binary_search(&k).is_err());
                mask.push(k > q || k >= n || hidden_key);
            }
        }
    }
    (
        Tensor::from_data(TensorData::new(index, [batch, count]), device),
        Tensor::from_data(TensorData::new(mask, [batch, count, len]), device),
    )
}

/// Per sample and slot, each member's weight `1 / group size` over `len` positions (row-major
/// `[batch, slots, len]`), each slot's last member `[batch, slots]`, and the slot count.
fn pool_weights(pool: &[Vec<Vec<usize>>], len: usize) -> (Vec<f32>, Vec<i64>, usize) {
    let batch = pool.len();
    let count = pool.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut weights = vec![0f32; batch * count * len];
    let mut last = vec![0i64; batch * count];
    for (b, groups) in pool.iter().enumerate() {
        for (s, group) in groups.iter().enumerate() {
            let w = 1.0 / group.len() as f32;
            for &m in group {
                weights[(b * count + s) * len + m] = w;
            }
            last[b * count + s] = group.last().copied().unwrap_or(0) as i64;
        }
    }
    (weights, last, count)
}

/// Hook-given positions must be sorted, unique and inside each sample's real tokens; a `rows`
/// list may be empty only for a sample without real tokens.
pub(crate) fn check_positions(layer: usize, layout: &SeqLayout, lists: &[Vec<usize>], what: &'static str) -> Result<(), HookError> {
    check_count(layer, layout, lists.len(), what)?;
    for (b, (list, sample)) in lists.iter().zip(&layout.samples).enumerate() {
        let sorted = list.windows(2).all(|w| w[0] < w[1]);
        let inside = list.last().is_none_or(|&p| p < sample.len());
        if !sorted || !inside {
            let message = format!("must be sorted, unique and < {} (got {list:?})", sample.len());
            return Err(BadRequest::at(layer, what, message).in_sample(b));
        }
        if what == "rows" && list.is_empty() && !sample.is_empty() {
            return Err(BadRequest::at(layer, what, "empty request".into()).in_sample(b));
        }
    }
    Ok(())
}

/// Pooling groups must be non-empty, sorted, unique and inside each sample's real tokens. Groups
/// may overlap (adaptive pooling windows do when the length is not a multiple of their count).
fn check_groups(layer: usize, layout: &SeqLayout, pool: &[Vec<Vec<usize>>]) -> Result<(), HookError> {
    check_count(layer, layout, pool.len(), "kv pool")?;
    for (b, (groups, sample)) in pool.iter().zip(&layout.samples).enumerate() {
        for (g, group) in groups.iter().enumerate() {
            let problem = if group.is_empty() {
                Some("is empty".to_string())
            } else if !group.windows(2).all(|w| w[0] < w[1]) {
                Some(format!("must be sorted and unique (got {group:?})"))
            } else {
                group
                    .iter()
                    .find(|&&p| p >= sample.len())
                    .map(|p| format!("has position {p}, not < {}", sample.len()))
            };
            if let Some(problem) = problem {
                return Err(BadRequest::at(layer, "kv pool", format!("group {g} {problem}")).in_sample(b));
            }
        }
    }
    Ok(())
}

fn check_count(layer: usize, layout: &SeqLayout, lists: usize, what: &'static str) -> Result<(), HookError> {
    if lists != layout.samples.len() {
        return Err(BadRequest::at(layer, what, format!("{lists} lists for {} samples", layout.samples.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::{Attention, AttentionConfig};
    use crate::hooks::SampleLayout;
    use burn::tensor::Distribution;

    type B = burn::backend::Flex;

    fn attention(heads: usize) -> Attention<B> {
        AttentionConfig::new(8, heads, heads, 4, false, false).init(&Default::default())
    }

    fn values(t: Tensor<B, 4>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn dense_masks_attend_exactly_as_the_broadcast_ones() {
        let device = Default::default();
        let (b, h, len, d) = (3, 2, 6, 4);
        let lengths = [6, 4, 1];
        let layout = SeqLayout {
            samples: lengths.iter().map(|&n| SampleLayout { index: (0..n).collect(), image: 0..0 }).collect(),
            padded_len: len,
        };
        let valid: Vec<bool> = lengths.iter().flat_map(|&n| (0..len).map(move |k| k < n)).collect();
        let valid = Tensor::<B, 2, Bool>::from_data(TensorData::new(valid, [b, len]), &device);
        let qkv = || Tensor::<B, 4>::random([b, h, len, d], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (qkv(), qkv(), qkv());
        let layer = attention(h);

        let dense = dense_causal_mask::<B>(&layout, h, &device);
        let broadcast = layer.attend(q.clone(), k.clone(), v.clone(), &KeyMask::CausalValid(valid));
        let from_dense = layer.attend(q.clone(), k.clone(), v.clone(), &KeyMask::Dense(dense.clone()));
        assert_eq!(values(broadcast), values(from_dense));

        // An explicit mask (here: every other key hidden as well) and its dense copy.
        let explicit: Vec<bool> = (0..b * len * len).map(|i| (i % len) > (i / len) % len || i % 2 == 1).collect();
        let explicit = Tensor::<B, 3, Bool>::from_data(TensorData::new(explicit, [b, len, len]), &device);
        let explicit_dense = explicit.clone().unsqueeze_dim::<4>(1).expand([b, h, len, len]).reshape([b * h, len, len]).reshape([b, h, len, len]);
        let a = layer.attend(q.clone(), k.clone(), v.clone(), &KeyMask::Explicit(explicit));
        let c = layer.attend(q, k, v, &KeyMask::Dense(explicit_dense));
        assert_eq!(values(a), values(c));

        // The dense causal mask masks what causality and padding mask, nothing else.
        let mask = dense.into_data().to_vec::<bool>().unwrap();
        for (s, &n) in lengths.iter().enumerate() {
            for head in 0..h {
                for q in 0..len {
                    for k in 0..len {
                        assert_eq!(mask[((s * h + head) * len + q) * len + k], k > q || k >= n);
                    }
                }
            }
        }
    }
}
