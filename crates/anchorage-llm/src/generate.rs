//! Greedy generation with a KV cache and stop tokens. The prefill runs the hook-driven loop
//! (pruning or restriction shapes the cache); each decode step embeds one token per sample,
//! attends to the cache and appends to it.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::attention::{AttnPlan, CacheMode};
use crate::cache::KvCache;
use crate::error::LlmError;
use crate::forward::{host_i64, LlmInput};
use crate::hooks::LayerHooks;
use crate::model::Llm;

/// Settings of [`Llm::generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens to produce per sample.
    pub max_new_tokens: usize,
    /// A sample stops after producing one of these (it is included in its output).
    pub stop_tokens: Vec<u32>,
}

impl<B: Backend> Llm<B> {
    /// Greedy decoding from embeddings (text or spliced image+text). Returns the new tokens of
    /// each sample.
    ///
    /// # Shapes
    /// `input.embeds [batch, len, hidden]` -> `batch` lists of at most `max_new_tokens` ids
    pub fn generate(
        &self,
        input: LlmInput<B>,
        hooks: &mut dyn LayerHooks<B>,
        cache: &mut KvCache<B>,
        options: &GenerateOptions,
    ) -> Result<Vec<Vec<u32>>, LlmError> {
        Ok(self.generate_timed(input, hooks, cache, options)?.0)
    }

    /// [`Llm::generate`], also returning the wall time of the prefill (up to the first tokens on
    /// the host, so a device has finished it).
    pub fn generate_timed(
        &self,
        input: LlmInput<B>,
        hooks: &mut dyn LayerHooks<B>,
        cache: &mut KvCache<B>,
        options: &GenerateOptions,
    ) -> Result<(Vec<Vec<u32>>, std::time::Duration), LlmError> {
        let started = std::time::Instant::now();
        let batch = input.embeds.dims()[0];
        let mut out = vec![Vec::new(); batch];
        if options.max_new_tokens == 0 {
            return Ok((out, started.elapsed()));
        }
        let prefill = self.run(input, hooks, Some(cache))?;
        let device = prefill.hidden.device();
        let last: Vec<i64> = prefill.layout.samples.iter().map(|s| s.last() as i64).collect();
        let width = self.config.hidden_size;
        let index = Tensor::<B, 2, Int>::from_data(TensorData::new(last, [batch, 1]), &device);
        let hidden = prefill.hidden.gather(1, index.unsqueeze_dim::<3>(2).expand([batch, 1, width]));
        let mut next = argmax_last(self.logits(hidden))?;
        let prefill_time = started.elapsed();
        let mut done = vec![false; batch];
        for step in 0..options.max_new_tokens {
            for b in 0..batch {
                if !done[b] {
                    out[b].push(next[b]);
                    done[b] = options.stop_tokens.contains(&next[b]);
                }
            }
            if done.iter().all(|&d| d) || step + 1 == options.max_new_tokens {
                break;
            }
            let logits = self.decode_step(&next, cache, &device)?;
            next = argmax_last(logits)?;
        }
        Ok((out, prefill_time))
    }

    /// One decode step: one token per sample at its next position, attending to the cache.
    ///
    /// # Shapes
    /// `tokens [batch]` -> logits `[batch, 1, vocab]`
    pub fn decode_step(&self, tokens: &[u32], cache: &mut KvCache<B>, device: &B::Device) -> Result<Tensor<B, 3>, LlmError> {
        let batch = tokens.len();
        if !cache.is_filled() || cache.next_position.len() != batch || cache.layers.len() != self.num_layers() {
            return Err(LlmError::InputShape {
                what: "KV cache".into(),
                expected: format!("a prefilled cache for {batch} samples and {} layers", self.num_layers()),
                found: vec![cache.next_position.len(), cache.layers.len()],
            });
        }
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, 1]), device);
        let mut hidden = self.embed(ids);
        let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(cache.next_position.clone(), [batch, 1]), device);
        let (cos, sin) = self.rope.cos_sin(positions, hidden.dtype());
        let plan = AttnPlan::causal();
        for (i, layer) in self.model.layers.iter().enumerate() {
            let (out, _) = layer.forward(hidden, &cos, &sin, &plan, CacheMode::Decode(&mut cache.layers[i]));
            hidden = out;
        }
        for p in &mut cache.next_position {
            *p += 1;
        }
        Ok(self.logits(self.model.norm.forward(hidden)))
    }
}

/// Argmax over the vocabulary of `[batch, 1, vocab]` logits.
fn argmax_last<B: Backend>(logits: Tensor<B, 3>) -> Result<Vec<u32>, LlmError> {
    let ids = host_i64(logits.argmax(2).into_data(), "greedy tokens")?;
    Ok(ids.into_iter().map(|v| v as u32).collect())
}
