//! `train inspect llm`: run a decoder LLM on given token ids and write what transformers would
//! return: logits, every hidden state, and optionally greedy tokens.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_llm::{load_llm, write_tensors, GenerateOptions, HiddenRecorder, KvCache, LlmInput, NoHooks};
use anchorage_model::spec::ModelSource;
use anchorage_model::{resolve_hub_model, HubAccess};
use anyhow::Context;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorData};
use clap::{Args, ValueEnum};

use crate::backend::Flex;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LlmDtype {
    F32,
    Bf16,
    F16,
}

#[derive(Debug, Args)]
pub struct LlmArgs {
    /// Hugging Face model folder (config.json + model.safetensors or sharded with an index).
    #[arg(long, required_unless_present = "hub", conflicts_with = "hub")]
    pub model: Option<PathBuf>,
    /// Or a Hub id (`owner/name`): found in the local HF cache, downloaded into it if missing
    /// (not with HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub hub: Option<String>,
    /// Hub revision (branch, tag or commit); with --hub.
    #[arg(long, requires = "hub")]
    pub revision: Option<String>,
    /// Input token ids, comma-separated (include BOS yourself).
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<i64>,
    /// Also generate this many tokens greedily (KV cache, no stop token).
    #[arg(long)]
    pub generate: Option<usize>,
    /// Parameter and compute dtype.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: LlmDtype,
    /// Output safetensors: `logits` [1,T,V] f32, `hidden_states.{i}` [1,T,D] f32 for i = 0..=L
    /// (0 = embeddings, L = after the final norm), `generated` [1,N] i64 with --generate.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: LlmArgs) -> anyhow::Result<()> {
    let device = Default::default();
    let dtype = match args.dtype {
        LlmDtype::F32 => DType::F32,
        LlmDtype::Bf16 => DType::BF16,
        LlmDtype::F16 => DType::F16,
    };
    let dir = match (&args.model, &args.hub) {
        (Some(dir), _) => dir.clone(),
        (None, Some(hub)) => {
            let source = ModelSource {
                hub: Some(hub.clone()),
                revision: args.revision.clone(),
                ..Default::default()
            };
            source.check().map_err(anyhow::Error::msg)?;
            resolve_hub_model(&source, HubAccess::AllowDownload)?
        }
        (None, None) => anyhow::bail!("give --model DIR or --hub ID"),
    };
    let llm = load_llm::<Flex>(&dir, dtype, &device).with_context(|| format!("loading {}", dir.display()))?;
    let t = args.ids.len();
    let embeds = llm.embed_checked(&[args.ids.clone()], &device)?;
    let mut recorder = HiddenRecorder::default();
    let out = llm.forward_embeds(LlmInput::plain(embeds.clone()), &mut recorder)?;
    let f32_data = |x: Tensor<Flex, 3>| x.cast(FloatDType::F32).into_data();
    let mut tensors = BTreeMap::new();
    tensors.insert("logits".to_string(), f32_data(llm.logits(out.hidden.clone())));
    let layers = llm.num_layers();
    tensors.insert("hidden_states.0".to_string(), f32_data(embeds.clone()));
    for (i, h) in recorder.layers.into_iter().take(layers.saturating_sub(1)).enumerate() {
        tensors.insert(format!("hidden_states.{}", i + 1), f32_data(h));
    }
    tensors.insert(format!("hidden_states.{layers}"), f32_data(out.hidden));
    if let Some(n) = args.generate {
        let options = GenerateOptions {
            max_new_tokens: n,
            stop_tokens: vec![],
        };
        let mut cache = KvCache::new(layers);
        let generated = llm.generate(LlmInput::plain(embeds), &mut NoHooks, &mut cache, &options)?;
        let ids: Vec<i64> = generated[0].iter().map(|&v| v as i64).collect();
        let len = ids.len();
        tensors.insert("generated".to_string(), TensorData::new(ids, [1, len]));
    }
    write_tensors(&args.out, &tensors)?;
    tracing::info!(tokens = t, layers, out = %args.out.display(), "wrote LLM outputs");
    Ok(())
}
