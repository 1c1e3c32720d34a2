//! Turning a hook's [`LayerRequest`] into a layer's [`AttnPlan`]: the key/value restriction
//! (gather index), the key/value pooling (weights), the masks over the attended keys and the rows
//! to report, after checking the request against the current layout.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::attention::{AttnPlan, KeyMask};
use crate::error::LlmError;
use crate::hooks::{LayerRequest, SeqLayout};
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
    ) -> Result<AttnPlan<B>, LlmError> {
        let device = valid.device();
        let batch = layout.samples.len();
        let len = layout.padded_len;
        let mut plan = AttnPlan::causal();
        if padded {
            plan.mask = KeyMask::CausalValid(valid.clone());
        }
        if caching {
            plan.key_valid = Some(valid.clone());
        }
        if request.kv_pool.is_some() && (request.kv_keep.is_some() || request.rows.is_some()) {
            let other = if request.kv_keep.is_some() { "kv_keep" } else { "rows" };
            return Err(LlmError::Hook {
                layer,
                sample: 0,
                message: format!("kv_pool cannot be combined with {other} at the same layer"),
            });
        }
        // Per attended key slot: the current index it may be seen from (causality) and whether it
        // is real; ragged slot counts are padded with invalid filler.
        let slots = match (&request.kv_keep, &request.kv_pool) {
            (Some(keep), _) => {
                check_positions(layer, layout, keep, "kv_keep")?;
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
            (None, Some(pool)) => {
                check_groups(layer, layout, pool)?;
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
                plan.kv_pool = Some(Tensor::from_data(TensorData::new(weights, [batch, count, len]), &device));
                let last: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(last, [batch, count]), &device);
                let counts = pool.iter().map(Vec::len).collect::<Vec<_>>();
                Some((last, counts, count))
            }
            (None, None) => None,
        };
        if let Some((key_at, counts, count)) = slots {
            let key_valid: Vec<bool> = counts.iter().flat_map(|&n| (0..count).map(move |m| m < n)).collect();
            let key_valid: Tensor<B, 2, Bool> = Tensor::from_data(TensorData::new(key_valid, [batch, count]), &device);
            // masked where the slot's last member comes after the query (causal by current index)
            // or the slot is filler; built on the device so long sequences cost no host work.
            let shape = [batch, len, count];
            let key_at = key_at.reshape([batch, 1, count]).expand(shape);
            let query_at = Tensor::<B, 1, Int>::arange(0..len as i64, &device).reshape([1, len, 1]).expand(shape);
            let filler = key_valid.clone().bool_not().reshape([batch, 1, count]).expand(shape);
            plan.mask = KeyMask::Explicit(key_at.greater(query_at).bool_or(filler));
            if caching {
                plan.key_valid = Some(key_valid);
            }
        }
        if let Some(rows) = &request.rows {
            check_positions(layer, layout, rows, "rows")?;
            let count = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
            let mut index = Vec::with_capacity(batch * count);
            let mut mask = Vec::with_capacity(batch * count * len);
            for (b, wanted) in rows.iter().enumerate() {
                let n = layout.samples[b].len();
                let kept = request.kv_keep.as_ref().map(|k| &k[b]);
                for r in 0..count {
                    let q = wanted.get(r).or(wanted.last()).copied().unwrap_or(0);
                    index.push(q as i64);
                    for k in 0..len {
                        let hidden_key = kept.is_some_and(|kept| kept.binary_search(&k).is_err());
                        mask.push(k > q || k >= n || hidden_key);
                    }
                }
            }
            plan.rows = Some((
                Tensor::from_data(TensorData::new(index, [batch, count]), &device),
                Tensor::from_data(TensorData::new(mask, [batch, count, len]), &device),
            ));
            // head-mean rows need every key: project all rows, gather afterwards.
            plan.project_all_kv = true;
        }
        Ok(plan)
    }
}

/// Hook-given positions must be sorted, unique and inside each sample's real tokens.
pub(crate) fn check_positions(layer: usize, layout: &SeqLayout, lists: &[Vec<usize>], what: &str) -> Result<(), LlmError> {
    check_count(layer, layout, lists.len(), what)?;
    for (b, (list, sample)) in lists.iter().zip(&layout.samples).enumerate() {
        let sorted = list.windows(2).all(|w| w[0] < w[1]);
        let inside = list.last().is_none_or(|&p| p < sample.len());
        if !sorted || !inside {
            return Err(LlmError::Hook {
                layer,
                sample: b,
                message: format!("{what} must be sorted, unique and < {} (got {list:?})", sample.len()),
            });
        }
        if what == "rows" && list.is_empty() {
            return Err(LlmError::Hook {
                layer,
                sample: b,
                message: "rows: empty request".into(),
            });
        }
    }
    Ok(())
}

/// Pooling groups must be non-empty, sorted, unique and inside each sample's real tokens. Groups
/// may overlap (adaptive pooling windows do when the length is not a multiple of their count).
fn check_groups(layer: usize, layout: &SeqLayout, pool: &[Vec<Vec<usize>>]) -> Result<(), LlmError> {
    check_count(layer, layout, pool.len(), "kv_pool")?;
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
                return Err(LlmError::Hook {
                    layer,
                    sample: b,
                    message: format!("kv_pool group {g} {problem}"),
                });
            }
        }
    }
    Ok(())
}

fn check_count(layer: usize, layout: &SeqLayout, lists: usize, what: &str) -> Result<(), LlmError> {
    if lists != layout.samples.len() {
        return Err(LlmError::Hook {
            layer,
            sample: lists,
            message: format!("{what}: {lists} lists for {} samples", layout.samples.len()),
        });
    }
    Ok(())
}
