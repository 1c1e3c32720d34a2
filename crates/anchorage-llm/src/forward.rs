//! The decoder loop over embeddings: right-padded batches, explicit positions, and the hook seam
//! (attention rows, key/value restriction or pooling, dropping positions). With [`NoHooks`](crate::NoHooks)
//! and no padding it is the plain causal forward through burn's fused attention.

use std::ops::Range;

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::attention::{AttnPlan, CacheMode};
use crate::cache::KvCache;
use crate::error::LlmError;
use crate::hooks::{AttentionRows, LayerHooks, LayerRequest, SampleLayout, SeqLayout};
use crate::model::Llm;
use crate::plan::check_positions;

/// Inputs of [`Llm::forward_embeds`].
#[derive(Debug, Clone)]
pub struct LlmInput<B: Backend> {
    /// `[batch, len, hidden]`
    pub embeds: Tensor<B, 3>,
    /// `[batch, len]`, true for real tokens; right padding only.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `[batch, len]` RoPE positions (a pruned sequence passes its original positions).
    pub position_ids: Tensor<B, 2, Int>,
    /// Per sample, where its image tokens sit (indices into this sequence; empty when none).
    pub image_spans: Vec<Range<usize>>,
}

impl<B: Backend> LlmInput<B> {
    /// Unpadded inputs at positions `0..len` with no image (text-only scoring, tests).
    pub fn plain(embeds: Tensor<B, 3>) -> Self {
        let [b, l, _] = embeds.dims();
        let device = embeds.device();
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..l as i64).collect();
        Self {
            attention_mask: Tensor::<B, 2, Int>::ones([b, l], &device).bool(),
            position_ids: Tensor::from_data(TensorData::new(positions, [b, l]), &device),
            image_spans: vec![0..0; b],
            embeds,
        }
    }

    /// Right-padded inputs from per-sample lengths, positions `0..len`.
    pub fn padded(embeds: Tensor<B, 3>, lengths: &[usize], image_spans: Vec<Range<usize>>) -> Self {
        let [b, l, _] = embeds.dims();
        let device = embeds.device();
        let mask: Vec<bool> = lengths.iter().flat_map(|&n| (0..l).map(move |j| j < n)).collect();
        let positions: Vec<i64> = (0..b).flat_map(|_| 0..l as i64).collect();
        Self {
            attention_mask: Tensor::from_data(TensorData::new(mask, [b, l]), &device),
            position_ids: Tensor::from_data(TensorData::new(positions, [b, l]), &device),
            image_spans,
            embeds,
        }
    }
}

/// What [`Llm::forward_embeds`] returns.
#[derive(Debug, Clone)]
pub struct LlmOutput<B: Backend> {
    /// `[batch, len', hidden]` after the final norm (`len'` < `len` when a hook dropped positions).
    pub hidden: Tensor<B, 3>,
    /// `[batch, len']`, true for real tokens.
    pub attention_mask: Tensor<B, 2, Bool>,
    /// `[batch, len']` positions of the surviving tokens.
    pub position_ids: Tensor<B, 2, Int>,
    /// Which original indices survived, per sample.
    pub layout: SeqLayout,
}

impl<B: Backend> Llm<B> {
    /// Runs the decoder over embeddings.
    ///
    /// # Shapes
    /// `embeds [batch, len, hidden]`, `attention_mask [batch, len]`, `position_ids [batch, len]` ->
    /// `hidden [batch, len', hidden]` (after the final norm; `len' = len` unless a hook drops)
    pub fn forward_embeds(&self, input: LlmInput<B>, hooks: &mut dyn LayerHooks<B>) -> Result<LlmOutput<B>, LlmError> {
        self.run(input, hooks, None)
    }

    /// The loop shared by the forward and the prefill of generation. A hook's error ends it.
    pub(crate) fn run(
        &self,
        input: LlmInput<B>,
        hooks: &mut dyn LayerHooks<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<LlmOutput<B>, LlmError> {
        let [batch, len, _] = input.embeds.dims();
        let (lengths, layout) = self.initial_layout(&input)?;
        if let Some(cache) = cache.as_deref_mut() {
            let positions = host_i64(input.position_ids.clone().into_data(), "position_ids")?;
            cache.next_position = (0..batch)
                .map(|b| if lengths[b] == 0 { 0 } else { positions[b * len + lengths[b] - 1] + 1 })
                .collect();
            cache.layers = vec![None; self.num_layers()];
        }

        let active = hooks.active();
        let dtype = input.embeds.dtype();
        let mut state = State {
            hidden: input.embeds,
            positions: input.position_ids,
            valid: input.attention_mask,
            padded: lengths.iter().any(|&n| n < len),
            layout,
        };
        let (mut cos, mut sin) = self.rope.cos_sin(state.positions.clone(), dtype);

        let mut reuse: Option<(LayerRequest, AttnPlan<B>)> = None;
        for (i, layer) in self.model.layers.iter().enumerate() {
            let request = if active { hooks.before_layer(i, &state.layout)? } else { LayerRequest::default() };
            // A policy repeats the same request over a stage: reuse the plan (its host-built
            // index, weights and masks) while neither the request nor the sequence changed.
            let plan = match reuse.take().filter(|(r, _)| *r == request) {
                Some((_, plan)) => plan,
                None => self.plan(i, &state.layout, &request, &state.valid, state.padded, cache.is_some())?,
            };
            reuse = Some((request.clone(), plan.clone()));
            let mode = match cache.as_deref_mut() {
                Some(c) => CacheMode::Fill(&mut c.layers[i]),
                None => CacheMode::None,
            };
            let (out, rows) = layer.forward(state.hidden, &cos, &sin, &plan, mode);
            state.hidden = out;
            if let (Some(probs), Some(rows)) = (rows, request.rows) {
                hooks.attention_rows(i, &state.layout, AttentionRows { probs, rows })?;
            }
            if !active {
                continue;
            }
            if let Some(keep) = hooks.after_layer(i, &state.layout, &state.hidden)? {
                reuse = None;
                check_positions(i, &state.layout, &keep, "after_layer keep")?;
                state.keep(&keep);
                (cos, sin) = self.rope.cos_sin(state.positions.clone(), dtype);
            }
        }
        Ok(LlmOutput {
            hidden: self.model.norm.forward(state.hidden),
            attention_mask: state.valid,
            position_ids: state.positions,
            layout: state.layout,
        })
    }

    /// Checks the input's shapes, padding and image spans; returns each sample's real-token count
    /// and the layout before layer 0.
    fn initial_layout(&self, input: &LlmInput<B>) -> Result<(Vec<usize>, SeqLayout), LlmError> {
        let [batch, len, width] = input.embeds.dims();
        check_dims("attention_mask", &input.attention_mask.dims(), [batch, len])?;
        check_dims("position_ids", &input.position_ids.dims(), [batch, len])?;
        if width != self.config.hidden_size || input.image_spans.len() != batch {
            return Err(LlmError::InputShape {
                what: "embeds / image_spans".into(),
                expected: format!("[{batch}, {len}, {}] and {batch} spans", self.config.hidden_size),
                found: vec![batch, len, width, input.image_spans.len()],
            });
        }
        let lengths = right_padded_lengths(&input.attention_mask)?;
        let samples = lengths
            .iter()
            .zip(&input.image_spans)
            .enumerate()
            .map(|(sample, (&n, span))| {
                if span.end > n || span.start > span.end {
                    return Err(LlmError::ImageSpan { sample, span: span.clone(), len: n });
                }
                Ok(SampleLayout {
                    index: (0..n).collect(),
                    image: span.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((lengths, SeqLayout { samples, padded_len: len }))
    }
}

/// The sequence between two layers: hidden states, positions, validity and layout.
struct State<B: Backend> {
    /// `[batch, len, hidden]`
    hidden: Tensor<B, 3>,
    /// `[batch, len]`
    positions: Tensor<B, 2, Int>,
    /// `[batch, len]`, true for real tokens.
    valid: Tensor<B, 2, Bool>,
    /// Whether some sample has padding.
    padded: bool,
    layout: SeqLayout,
}

impl<B: Backend> State<B> {
    /// Keeps, per sample, only the current positions `keep` (checked: sorted, unique, in range),
    /// gathered to the front and right-padded with the sample's last kept row.
    fn keep(&mut self, keep: &[Vec<usize>]) {
        let [batch, _, width] = self.hidden.dims();
        let device = self.hidden.device();
        let new_len = keep.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut gather = Vec::with_capacity(batch * new_len);
        let mut mask = Vec::with_capacity(batch * new_len);
        for kept in keep {
            let filler = kept.last().copied().unwrap_or(0) as i64;
            for j in 0..new_len {
                gather.push(kept.get(j).map_or(filler, |&c| c as i64));
                mask.push(j < kept.len());
            }
        }
        let index = Tensor::<B, 2, Int>::from_data(TensorData::new(gather, [batch, new_len]), &device);
        self.hidden = self.hidden.clone().gather(1, index.clone().unsqueeze_dim::<3>(2).expand([batch, new_len, width]));
        self.positions = self.positions.clone().gather(1, index);
        self.valid = Tensor::from_data(TensorData::new(mask, [batch, new_len]), &device);
        for (sample, kept) in self.layout.samples.iter_mut().zip(keep) {
            sample.index = kept.iter().map(|&c| sample.index[c]).collect();
        }
        self.layout.padded_len = new_len;
        self.padded = keep.iter().any(|k| k.len() < new_len);
    }
}

fn check_dims(what: &str, found: &[usize], expected: [usize; 2]) -> Result<(), LlmError> {
    if found != expected {
        return Err(LlmError::InputShape {
            what: what.into(),
            expected: format!("{expected:?}"),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Real-token count per sample; errors when a real token follows padding.
fn right_padded_lengths<B: Backend>(mask: &Tensor<B, 2, Bool>) -> Result<Vec<usize>, LlmError> {
    let [batch, len] = mask.dims();
    let data = mask.to_data();
    let flags: Vec<bool> = match data.to_vec::<bool>() {
        Ok(flags) => flags,
        Err(_) => host_i64(data.convert::<i64>(), "attention_mask")?.into_iter().map(|f| f != 0).collect(),
    };
    if flags.len() != batch * len {
        return Err(LlmError::HostRead {
            what: "attention_mask".into(),
            message: format!("{} values for shape [{batch}, {len}]", flags.len()),
        });
    }
    (0..batch)
        .map(|b| {
            let row = &flags[b * len..(b + 1) * len];
            let n = row.iter().take_while(|&&f| f).count();
            match row[n..].iter().position(|&f| f) {
                Some(p) => Err(LlmError::NotRightPadded {
                    sample: b,
                    position: n + p,
                }),
                None => Ok(n),
            }
        })
        .collect()
}

/// Integer tensor data as `i64` on the host.
pub(crate) fn host_i64(data: TensorData, what: &str) -> Result<Vec<i64>, LlmError> {
    data.convert::<i64>().to_vec::<i64>().map_err(|e| LlmError::HostRead {
        what: what.into(),
        message: format!("{e:?}"),
    })
}
