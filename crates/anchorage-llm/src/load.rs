//! Loading a Hugging Face folder (config.json + safetensors, sharded or not, or PyTorch
//! `pytorch_model*.bin`; read by anchorage-tensors) into an [`Llm`].
//! Module field names mirror checkpoint keys, so no remap table is needed: the key of every burn
//! parameter is its module path. Linear weights are stored `[out, in]` by PyTorch and transposed
//! by burn-store's `PyTorchToBurnAdapter`. Loading is verified: every parameter must be found
//! with the right shape, else a typed error names the keys and shapes.

use std::path::Path;
use std::rc::Rc;

use anchorage_tensors::Checkpoint;
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use crate::config::LlamaConfig;
use crate::error::LlmError;
use crate::model::Llm;
use crate::wire::HfLlmConfig;

/// Where the decoder sits inside the checkpoint's key space. Our module paths are those of
/// `LlamaForCausalLM` (`model.*`, `lm_head.*`); other layouts hold the same tensors under another
/// prefix: a bare `LlamaModel` (`layers.*`), old LLaVA-HF (`language_model.model.*`,
/// `language_model.lm_head.*`) and transformers 5 `LlavaForConditionalGeneration`
/// (`model.language_model.*`, `lm_head.*`).
const DECODER_PREFIXES: [&str; 4] = ["model.", "", "language_model.model.", "model.language_model."];
const HEAD_PREFIXES: [&str; 2] = ["", "language_model."];

/// Where the decoder (`model.*` of `LlamaForCausalLM`) and the output head (`lm_head.*`) sit in
/// a checkpoint's key space: `decoder` replaces `model.`, `head` goes before `lm_head.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmKeyPrefixes {
    pub decoder: String,
    pub head: String,
}

impl LlmKeyPrefixes {
    /// The first layout under which the checkpoint has `embed_tokens.weight` (resp.
    /// `lm_head.weight`); the standard one when none matches (missing keys are then reported).
    pub fn detect(checkpoint: &Checkpoint) -> Self {
        let has = |k: String| checkpoint.contains_key(&k);
        let decoder = DECODER_PREFIXES
            .into_iter()
            .find(|p| has(format!("{p}embed_tokens.weight")))
            .unwrap_or("model.");
        let head = HEAD_PREFIXES
            .into_iter()
            .find(|p| has(format!("{p}lm_head.weight")))
            .unwrap_or("");
        Self { decoder: decoder.to_string(), head: head.to_string() }
    }

    /// The checkpoint key of one of our module paths.
    fn checkpoint_key(&self, path: &str) -> String {
        match path.strip_prefix("model.") {
            Some(rest) => format!("{}{rest}", self.decoder),
            None => format!("{}{path}", self.head),
        }
    }
}

/// Reads `dir/config.json` into a model configuration.
pub fn read_config(dir: &Path) -> Result<LlamaConfig, LlmError> {
    let path = dir.join("config.json");
    HfLlmConfig::read(&path)?.to_config(&path)
}

/// Loads the model in `dir` with parameters in `dtype` (F32, BF16 or F16).
pub fn load_llm<B: Backend>(dir: &Path, dtype: DType, device: &B::Device) -> Result<Llm<B>, LlmError> {
    let config = read_config(dir)?;
    let checkpoint = Rc::new(Checkpoint::open_dir(dir)?);
    let prefixes = LlmKeyPrefixes::detect(&checkpoint);
    load_llm_from(config, &checkpoint, &prefixes, dir, dtype, device)
}

/// Loads an LLM whose config was read elsewhere from an already opened checkpoint that may hold
/// more than the LLM (a LLaVA checkpoint), its keys under `prefixes`. `dir` names the folder in
/// errors.
pub fn load_llm_from<B: Backend>(
    config: LlamaConfig,
    checkpoint: &Rc<Checkpoint>,
    prefixes: &LlmKeyPrefixes,
    dir: &Path,
    dtype: DType,
    device: &B::Device,
) -> Result<Llm<B>, LlmError> {
    let mut model = config.init::<B>(device);
    let expected = model.collect(None, None, false);
    let mut missing = Vec::new();
    let mut snapshots = Vec::with_capacity(expected.len());
    for want in &expected {
        let key = prefixes.checkpoint_key(&want.full_path());
        let Some(entry) = checkpoint.get(&key) else {
            missing.push(key);
            continue;
        };
        if !entry.dtype.is_float() {
            return Err(LlmError::Dtype {
                path: checkpoint.path_of(entry).to_path_buf(),
                key,
                dtype: entry.dtype.name().to_string(),
            });
        }
        let is_linear_weight = want.module_type().as_deref() == Some("Struct:Linear") && key.ends_with(".weight");
        let mut want_shape = want.shape.to_vec();
        if is_linear_weight {
            want_shape.reverse();
        }
        if entry.shape != want_shape {
            return Err(LlmError::Shape {
                path: checkpoint.path_of(entry).to_path_buf(),
                key,
                expected: want_shape,
                found: entry.shape.clone(),
            });
        }
        let source = Rc::clone(checkpoint);
        let shape = entry.shape.clone();
        let file_dtype = entry.dtype.to_burn();
        let data_fn = Rc::new(move || {
            // burn-store's closure error is a string; the message names the file and key.
            let data = source
                .data(&key)
                .map_err(|e| burn_store::TensorSnapshotError::DataError(e.to_string()))?;
            Ok(if file_dtype == dtype { data } else { data.convert_dtype(dtype) })
        });
        snapshots.push(TensorSnapshot::from_closure(
            data_fn,
            dtype,
            shape.into(),
            want.path_stack.clone().unwrap_or_default(),
            want.container_stack.clone().unwrap_or_default(),
            want.tensor_id.unwrap_or_default(),
        ));
    }
    if !missing.is_empty() {
        return Err(LlmError::MissingKeys {
            dir: dir.to_path_buf(),
            count: missing.len(),
            keys: missing.join(", "),
        });
    }
    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if let Some(err) = result.errors.first() {
        return Err(LlmError::Apply {
            path: dir.to_path_buf(),
            key: format!("{err:?}"),
            message: format!("{} error(s) while applying tensors", result.errors.len()),
        });
    }
    if !result.missing.is_empty() {
        let keys: Vec<String> = result.missing.iter().map(|(k, _)| k.clone()).collect();
        return Err(LlmError::MissingKeys {
            dir: dir.to_path_buf(),
            count: keys.len(),
            keys: keys.join(", "),
        });
    }
    let used: std::collections::BTreeSet<String> =
        expected.iter().map(|e| prefixes.checkpoint_key(&e.full_path())).collect();
    let unused: Vec<&String> = checkpoint.tensors().keys().filter(|k| !used.contains(*k)).collect();
    if !unused.is_empty() {
        tracing::debug!(count = unused.len(), first = ?unused.first(), "checkpoint tensors not used by the model");
    }
    tracing::info!(dir = %dir.display(), tensors = expected.len(), ?dtype, "loaded LLM");
    Ok(model)
}
