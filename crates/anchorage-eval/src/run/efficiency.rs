//! What answering cost: visual tokens entering the LLM, keys/values kept per layer under
//! compression, time to encode and prefill, decode speed and peak memory.

use std::time::Duration;

use anchorage_model::Generation;
use serde::{Deserialize, Serialize};

/// Totals over a run's batches.
/// Read back from `summary.json` by `train compare` (fields added later default to zero).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Efficiency {
    pub prompts: usize,
    pub batches: usize,
    /// Visual tokens that entered the LLM, summed over prompts.
    pub visual_tokens: usize,
    /// Prompt tokens after splicing, summed over prompts.
    pub prompt_tokens: usize,
    /// Tokens generated, summed over prompts.
    pub new_tokens: usize,
    /// Keys/values each layer attended to for the first prompt of each batch, summed over batches
    /// (empty without compression).
    pub kv_per_layer: Vec<usize>,
    pub encode_seconds: f64,
    pub llm_seconds: f64,
    pub prefill_seconds: f64,
    /// Model FLOPs of the LLM prefill, summed over prompts.
    pub prefill_flops: f64,
}

impl Efficiency {
    pub fn add(&mut self, g: &Generation) {
        self.prompts += g.tokens.len();
        self.batches += 1;
        self.visual_tokens += g.visual_tokens.iter().sum::<usize>();
        self.prompt_tokens += g.prompt_tokens.iter().sum::<usize>();
        self.new_tokens += g.tokens.iter().map(Vec::len).sum::<usize>();
        if let Some(kv) = &g.kept_kv {
            if self.kv_per_layer.len() < kv.len() {
                self.kv_per_layer.resize(kv.len(), 0);
            }
            for (total, k) in self.kv_per_layer.iter_mut().zip(kv) {
                *total += k;
            }
        }
        self.encode_seconds += secs(g.encode_time);
        self.llm_seconds += secs(g.llm_time);
        self.prefill_seconds += secs(g.prefill_time);
        self.prefill_flops += g.prefill_flops;
    }

    /// Mean visual tokens per prompt.
    pub fn visual_tokens_per_prompt(&self) -> f64 {
        self.visual_tokens as f64 / self.prompts.max(1) as f64
    }

    /// Mean prefill FLOPs per prompt.
    pub fn prefill_flops_per_prompt(&self) -> f64 {
        self.prefill_flops / self.prompts.max(1) as f64
    }

    /// Mean keys/values per layer per batch's first prompt.
    pub fn mean_kv_per_layer(&self) -> Vec<f64> {
        self.kv_per_layer.iter().map(|&k| k as f64 / self.batches.max(1) as f64).collect()
    }

    /// Mean encode + prefill latency of a batch, in seconds.
    pub fn prefill_latency(&self) -> f64 {
        (self.encode_seconds + self.prefill_seconds) / self.batches.max(1) as f64
    }

    /// Generated tokens per second of decoding (after the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        self.new_tokens as f64 / (self.llm_seconds - self.prefill_seconds).max(1e-9)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The process's peak resident memory in bytes (Linux `VmHWM`), if the system reports it.
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
