//! What can be checked of a spec before anything is loaded or downloaded: from the towers' config
//! files (or a built-in's config) the select layer's range and the compression layers' ranges,
//! and from a connector export's metadata whether it holds the connector kind the spec asks for.
//! `--dry-run` runs it, and so does a real run before it touches the weights or the Hub.

use anchorage_connectors::{format as connector_file, TensorFile};
use anchorage_llm::LlamaConfig;
use anchorage_vision::ClipVisionConfig;

use super::{BuiltinModel, ConnectorSection, LlavaSpec, ModelSource};
use crate::ModelError;

/// What was checked, and what could not be before loading (a Hub id not in the local cache).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preflight {
    pub checked: Vec<String>,
    pub deferred: Vec<String>,
}

impl LlavaSpec {
    /// Checks the spec against the towers' configs and the connector export's metadata.
    pub fn preflight(&self) -> Result<Preflight, ModelError> {
        let mut report = Preflight::default();
        let mut widths = (None, None);
        match vision_config(&self.vision.model)? {
            Some(v) => {
                widths.0 = Some(v.hidden_size);
                let n = v.num_hidden_layers as i64;
                let layer = i64::from(self.vision.select_layer);
                let index = if layer < 0 { n + 1 + layer } else { layer };
                let needs_cls = matches!(self.connector, ConnectorSection::AnchorFormer { .. });
                if !(0..=n).contains(&index) || (needs_cls && index == 0) {
                    let message = format!("{layer} is out of range for a tower with {n} layers (use 1..={n} or -{n}..=-1)");
                    return Err(ModelError::Spec { key: "vision.select_layer".into(), message });
                }
                report.checked.push(format!("vision.select_layer {layer}: hidden state {index} of {n} layers"));
                let size = self.vision.input_size(&v).map_err(|(key, message)| ModelError::Spec { key: format!("vision.{key}"), message })?;
                if size != v.image_size {
                    report.checked.push(format!("vision.image_size {size}: {} patches, positions interpolated from the tower's {}", v.num_tokens_at(size, size) - 1, v.image_size));
                }
            }
            None => report.deferred.push("vision tower: a Hub id, checked when the run loads it".into()),
        }
        match llm_config(&self.llm.model)? {
            Some(l) => {
                widths.1 = Some(l.hidden_size);
                self.compression.check(l.num_hidden_layers).map_err(|e| match e {
                    anchorage_compress::CompressError::Config { key, message } => ModelError::Spec { key: format!("compression.{key}"), message },
                    other => other.into(),
                })?;
                report.checked.push(format!("compression: layers fit the LLM's {}", l.num_hidden_layers));
                if let Some(line) = self.check_tokenizer_vocab(&l)? {
                    report.checked.push(line);
                }
            }
            None => report.deferred.push("LLM: a Hub id, checked when the run loads it".into()),
        }
        if let (Some(d_vision), Some(d_llm)) = widths {
            let dims = super::ConnectorDims { d_vision, d_llm, vision_tokens: 0 };
            self.connector.check_dims(dims).map_err(|(key, message)| ModelError::Spec { key: format!("connector.{key}"), message })?;
            let config = super::connector_config(&self.connector, super::ConnectorDims { vision_tokens: 1, ..dims });
            config.check_size().map_err(|(key, message)| ModelError::Spec { key, message })?;
            report.checked.push(format!("connector: vision width {d_vision} → LLM width {d_llm}"));
        }
        if let Some(init) = self.connector.init().filter(|p| p.is_file()) {
            check_connector_kind(init, self.connector.kind_name())?;
            report.checked.push(format!("connector.init {}: holds {}", init.display(), self.connector.kind_name()));
        }
        Ok(report)
    }
}

impl LlavaSpec {
    /// The tokenizer (when its file is there) must not produce ids past the LLM's embedding rows.
    fn check_tokenizer_vocab(&self, llm: &LlamaConfig) -> Result<Option<String>, ModelError> {
        let Some(path) = self.tokenizer(self.llm.model.path.as_deref()).filter(|p| p.is_file()) else { return Ok(None) };
        let tokens = anchorage_data::text::TextTokenizer::from_file(&path)?.vocab_size();
        tokenizer_fits(&path, tokens, llm.vocab_size)?;
        Ok(Some(format!("llm.tokenizer {}: {tokens} tokens fit the LLM's {} rows", path.display(), llm.vocab_size)))
    }
}

/// A tokenizer of `tokens` ids (added ones included) must not produce ids past the LLM's `rows`
/// embedding rows. The dry run checks it from the files, a run again with the towers it loaded.
pub fn tokenizer_fits(path: &std::path::Path, tokens: usize, rows: usize) -> Result<(), ModelError> {
    if tokens > rows {
        let message = format!("{} has {tokens} tokens but the LLM's embedding has {rows} rows: give the LLM's own tokenizer", path.display());
        return Err(ModelError::Spec { key: "llm.tokenizer".into(), message });
    }
    Ok(())
}

/// An export whose metadata names another connector kind is refused by name (instead of a list of
/// missing keys); a file without anchorage metadata (LLaVA's `mm_projector.bin`) is left to the loader.
pub(crate) fn check_connector_kind(path: &std::path::Path, want: &str) -> Result<(), ModelError> {
    let Ok(file) = TensorFile::read(path) else { return Ok(()) };
    let Ok((config, _, _)) = connector_file::read_header(&file) else { return Ok(()) };
    if config.kind() != want {
        let message = format!("holds a {} connector, the recipe's [connector] is {want}", config.kind());
        return Err(ModelError::ConnectorFile { path: path.to_path_buf(), message });
    }
    Ok(())
}

fn vision_config(source: &ModelSource) -> Result<Option<ClipVisionConfig>, ModelError> {
    Ok(match (source.builtin, &source.path) {
        (Some(BuiltinModel::Tiny), _) => Some(ClipVisionConfig::tiny()),
        (Some(BuiltinModel::ClipVitL14At336), _) => Some(ClipVisionConfig::vit_l14_336()),
        (Some(BuiltinModel::Llama2At7b), _) => None,
        (None, Some(dir)) if crate::hf_llava::is_llava_folder(dir) => Some(llava_folder_config(dir, "vision.model.path")?.vision),
        (None, Some(dir)) => Some(anchorage_vision::read_config(dir)?),
        (None, None) => None,
    })
}

/// The config of a llava-hf folder named as a tower (`[vision]`/`[llm]` `model.path`).
fn llava_folder_config(dir: &std::path::Path, key: &str) -> Result<crate::hf_llava::HfLlavaConfig, ModelError> {
    crate::hf_llava::HfLlavaConfig::read(dir).map_err(|e| ModelError::Spec { key: key.into(), message: e.to_string() })
}

fn llm_config(source: &ModelSource) -> Result<Option<LlamaConfig>, ModelError> {
    Ok(match (source.builtin, &source.path) {
        (Some(BuiltinModel::Tiny), _) => Some(LlamaConfig::tiny()),
        (Some(BuiltinModel::Llama2At7b), _) => Some(LlamaConfig::llama2_7b()),
        (Some(BuiltinModel::ClipVitL14At336), _) => None,
        (None, Some(dir)) if crate::hf_llava::is_llava_folder(dir) => Some(llava_folder_config(dir, "llm.model.path")?.text),
        (None, Some(dir)) => Some(anchorage_llm::read_config(dir)?),
        (None, None) => None,
    })
}
