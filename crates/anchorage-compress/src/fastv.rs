//! FastV (pkunlp-icler/FastV, `src/transformers/src/transformers/models/llama/modeling_llama.py`,
//! in-place path; `llava-hf/.../modeling_llama.py` for the KV-cache variant) as one prune stage:
//! after layer `K-1` runs, score each image token by layer `K-1`'s head-mean attention, keep the
//! best `round(ratio * N)` and drop the rest from the hidden states for layers `K..`, with original
//! RoPE positions.
//!
//! Differences from the reference, on purpose: every sample of a batch is scored and pruned with
//! its own attention and its own image span (the reference reads batch element 0 and a fixed
//! `sys_length`); padding stays masked. In generation the pruning happens in the prefill and decode
//! steps reuse the pruned KV cache (the llava-hf variant's behaviour).

use crate::config::{CompressionPolicy, FastVConfig, FastVRule};
use crate::error::CompressError;
use crate::prune::{PruneHooks, PruneStage};
use crate::rules::ScoreRule;

impl FastVConfig {
    /// FastV's single stage: K, its keep ratio, and its rule (the last token's row, or every row).
    pub fn stages(&self) -> Vec<PruneStage> {
        let rule = match self.rule {
            FastVRule::LastToken => ScoreRule::LastToken,
            FastVRule::AverageReceived => ScoreRule::AverageReceived,
        };
        vec![PruneStage {
            layer: self.layer,
            keep_ratio: self.keep_ratio,
            rule,
        }]
    }

    /// FastV's hooks for a decoder of `num_layers` layers (the settings checked first).
    pub fn hooks(&self, num_layers: usize) -> Result<PruneHooks, CompressError> {
        CompressionPolicy::FastV(self.clone()).check(num_layers)?;
        PruneHooks::new(self.stages(), num_layers)
    }
}
