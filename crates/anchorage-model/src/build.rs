//! From a [`LlavaSpec`] to a [`Llava`] on a device: towers (built-in, local folder or Hub id), the
//! connector sized from them (fresh, or from an export), and the LLM in its training mode.

use std::path::{Path, PathBuf};

use anchorage_connectors::{format as connector_file, Connector, ConnectorConfig};
use anchorage_data::ClipImageProcessor;
use anchorage_llm::{LlamaConfig, Llm};
use anchorage_vision::{ClipVisionConfig, FeatureSelect};
use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::spec::{connector_config, ConnectorDims, Dtype, LlmSection, LlmTraining, LlavaSpec};
use crate::towers::{check_dtype, language_model, materialize, vision_tower, VisionTower};
use crate::{Llava, ModelError, Trainable, VisionSelect};

/// A built model and what goes with it: the image processor, the tokenizer file and the configs.
pub struct Built<B: Backend, V: Backend = B> {
    pub model: Llava<B, V>,
    pub processor: ClipImageProcessor,
    /// `llm.tokenizer`, or `tokenizer.json` in the LLM's folder (`None` for a built-in LLM
    /// without `llm.tokenizer`).
    pub tokenizer: Option<PathBuf>,
    pub vision_config: ClipVisionConfig,
    pub llm_config: LlamaConfig,
}

impl LlavaSpec {
    /// Builds the model on `device`. `connector` is an export to start from (`connector.init`);
    /// `None` draws a fresh connector. Every random draw has its own seed derived from
    /// `self.seed` and happens at once, so a resumed process draws the same weights.
    pub fn build<B: Backend, V: Backend<Device = B::Device>>(&self, device: &B::Device, connector: Option<&Path>) -> Result<Built<B, V>, ModelError> {
        check_dtype::<V>(self.vision.dtype, device, "vision.dtype")?;
        check_dtype::<B>(self.llm.dtype, device, "llm.dtype")?;
        let _draws = crate::seeded::lock();
        V::seed(device, self.seed);
        let VisionTower { config: vision_config, model: vision, processor } = vision_tower::<V>(&self.vision, device)?;
        let input_size = self.vision.input_size(&vision_config).map_err(|(key, message)| ModelError::Spec { key: format!("vision.{key}"), message })?;
        let processor = if input_size == vision_config.image_size { processor } else { processor.with_output_size(input_size as u32) };
        B::seed(device, self.seed.wrapping_add(1));
        // A fully trained bf16 LLM is loaded in f32: the master copy AdamW steps (`Llava::llm_compute`).
        let master = self.llm.training == LlmTraining::Full && self.llm.dtype == Dtype::Bf16;
        let stored = if master { LlmSection { dtype: Dtype::F32, ..self.llm.clone() } } else { self.llm.clone() };
        let (llm, llm_dir) = language_model::<B>(&stored, device)?;
        // Layer ranges need the LLM's depth: checked here, before anything trains or generates.
        self.compression.check(llm.config.num_hidden_layers).map_err(|e| match e {
            anchorage_compress::CompressError::Config { key, message } => ModelError::Spec { key: format!("compression.{key}"), message },
            other => other.into(),
        })?;
        let tokens_at_input = vision_config.num_tokens_at(input_size, input_size);
        let vision_tokens = match self.vision.feature_select {
            FeatureSelect::Patch => tokens_at_input - 1,
            FeatureSelect::ClsPatch => tokens_at_input,
        };
        let dims = ConnectorDims { d_vision: vision_config.hidden_size, d_llm: llm.config.hidden_size, vision_tokens };
        self.connector.check_dims(dims).map_err(|(key, message)| ModelError::Spec { key: format!("connector.{key}"), message })?;
        let config = connector_config(&self.connector, dims);
        let select = VisionSelect::new(&vision, i64::from(self.vision.select_layer), self.vision.feature_select, config.needs_cls_attention())?;
        let connector = match connector {
            Some(path) => import_connector::<B>(path, &config, device)?,
            None => {
                B::seed(device, self.seed.wrapping_add(2));
                materialize(config.init::<B>(device)?)
            }
        };
        let llm = self.llm_in_mode(llm, device)?.with_recomputed_attention(self.llm.recompute_attention);
        let llm_config = llm.config.clone();
        let model = Llava {
            vision,
            trainable: Trainable::new(connector, llm),
            training: self.llm.training,
            select,
            compression: self.compression.clone(),
            image_size: input_size,
            image_tokens: config.output_tokens(vision_tokens),
            connector_config: config,
            device: device.clone(),
            llm_compute: master.then_some(burn::tensor::FloatDType::BF16),
        };
        Ok(Built { model, processor, tokenizer: self.tokenizer(llm_dir.as_deref()), vision_config, llm_config })
    }

    /// Frozen: no parameter takes a gradient; full: every one does; LoRA: fresh adapters (drawn
    /// at once from their own seed) on a frozen base.
    fn llm_in_mode<B: Backend>(&self, llm: Llm<B>, device: &B::Device) -> Result<Llm<B>, ModelError> {
        Ok(match (self.llm.training, self.llm.lora_spec()) {
            (LlmTraining::Full, _) => llm,
            (LlmTraining::Lora, Some(spec)) => {
                B::seed(device, self.seed.wrapping_add(3));
                materialize(llm.no_grad().with_lora(&spec, device)?)
            }
            (LlmTraining::Lora, None) => return Err(ModelError::Spec { key: "llm.lora".into(), message: "`training = \"lora\"` needs an [llm.lora] table".into() }),
            (LlmTraining::Frozen, _) => llm.no_grad(),
        })
    }
}

/// A connector export (`connector.init`), checked against the spec before its weights are read.
fn import_connector<B: Backend>(path: &Path, config: &ConnectorConfig, device: &B::Device) -> Result<Connector<B>, ModelError> {
    if crate::hf_llava::is_llava_folder(path) {
        return projector_of_llava_folder(path, config, device);
    }
    if !path.is_file() {
        return Err(ModelError::ConnectorFile { path: path.to_path_buf(), message: "does not exist (run stage 1 first, or drop `connector.init`)".into() });
    }
    crate::spec::check_connector_kind(path, config.kind())?;
    Ok(connector_file::import::<B>(path, config, device)?)
}

/// `connector.init` naming a llava-hf folder: its `multi_modal_projector` starts the MLP connector,
/// which must be the one the spec asks for (two layers, the towers' widths, the same activation).
fn projector_of_llava_folder<B: Backend>(dir: &Path, config: &ConnectorConfig, device: &B::Device) -> Result<Connector<B>, ModelError> {
    let refused = |message: String| ModelError::ConnectorFile { path: dir.to_path_buf(), message };
    let (connector, found) = crate::hf_llava::load_projector_part::<B>(dir, device).map_err(|e| refused(e.to_string()))?;
    // `sequential` only names the weights (LLaVA's `nn.Sequential` keys); the computation is the same.
    let same = match (&found, config) {
        (ConnectorConfig::Mlp(a), ConnectorConfig::Mlp(b)) => (a.d_input, a.d_output, a.depth, a.activation) == (b.d_input, b.d_output, b.depth, b.activation),
        _ => false,
    };
    if !same {
        return Err(refused(format!("its multi_modal_projector is {found:?}, the recipe's [connector] builds {config:?}: use kind = \"mlp\" with depth 2 and the folder's towers")));
    }
    Ok(connector)
}
