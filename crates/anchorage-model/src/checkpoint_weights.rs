//! What a step checkpoint's weights record (`trainable.bin`) holds, per LLM training mode, plus
//! AnyRes's `image_newline` when the model has one (a record without it is the same bytes as
//! before AnyRes existed, so older checkpoints load into models without AnyRes).

use std::path::Path;

use anchorage_connectors::Connector;
use anchorage_llm::{Llm, LoraAdapter};
use burn::module::{Module, Param};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::Backend, Tensor};

use crate::spec::LlmTraining;
use crate::{ModelError, Trainable};

/// The connector, the LLM when it trains in full, and under LoRA only the adapters (the frozen
/// base is rebuilt from the spec on resume, so a 7B base costs nothing per checkpoint).
#[derive(Module, Debug)]
pub struct CheckpointWeights<B: Backend> {
    connector: Connector<B>,
    llm: Option<Llm<B>>,
    adapters: Vec<Option<LoraAdapter<B>>>,
}

/// [`CheckpointWeights`] of an AnyRes model: the same, then `image_newline`.
#[derive(Module, Debug)]
struct WithImageNewline<B: Backend> {
    weights: CheckpointWeights<B>,
    image_newline: Param<Tensor<B, 1>>,
}

impl<B: Backend> CheckpointWeights<B> {
    pub fn of(trainable: &Trainable<B>, training: LlmTraining) -> Self {
        let connector = trainable.connector.clone();
        match training {
            LlmTraining::Frozen => Self { connector, llm: None, adapters: Vec::new() },
            LlmTraining::Full => Self { connector, llm: Some(trainable.llm.clone()), adapters: Vec::new() },
            LlmTraining::Lora => Self { connector, llm: None, adapters: trainable.llm.lora_adapters() },
        }
    }

    /// `trainable` with these weights (its own frozen LLM, or frozen base under LoRA, kept).
    pub fn restore(self, trainable: Trainable<B>, training: LlmTraining) -> Result<Trainable<B>, ModelError> {
        let llm = match (training, self.llm) {
            (LlmTraining::Full, Some(llm)) => llm,
            (LlmTraining::Lora, _) => trainable.llm.with_lora_adapters(self.adapters)?,
            _ => trainable.llm,
        };
        Ok(Trainable { connector: self.connector, llm, image_newline: trainable.image_newline })
    }

    /// The weights of `trainable` as `trainable.bin` bytes.
    pub fn to_bytes(trainable: &Trainable<B>, training: LlmTraining) -> Result<Vec<u8>, ModelError> {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let weights = Self::of(trainable, training);
        let bytes = match &trainable.image_newline {
            None => recorder.record(weights.into_record(), ()),
            Some(newline) => recorder.record(WithImageNewline { weights, image_newline: newline.clone() }.into_record(), ()),
        };
        bytes.map_err(|e| ModelError::Record { path: "trainable.bin".into(), message: e.to_string() })
    }

    /// `trainable` with the weights of `trainable.bin` bytes read from `path`.
    /// An AnyRes model (with `image_newline`) needs a checkpoint that holds one.
    pub fn load_bytes(trainable: Trainable<B>, training: LlmTraining, bytes: Vec<u8>, path: &Path, device: &B::Device) -> Result<Trainable<B>, ModelError> {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let bad = |e: burn::record::RecorderError, hint: &str| ModelError::Record { path: path.to_path_buf(), message: format!("{e}{hint}") };
        match trainable.image_newline.clone() {
            None => {
                let record = recorder.load(bytes, device).map_err(|e| bad(e, ""))?;
                Self::of(&trainable, training).load_record(record).restore(trainable, training)
            }
            Some(image_newline) => {
                let record = recorder.load(bytes, device).map_err(|e| bad(e, " (an AnyRes model needs a checkpoint with image_newline)"))?;
                let loaded = WithImageNewline { weights: Self::of(&trainable, training), image_newline }.load_record(record);
                let mut restored = loaded.weights.restore(trainable, training)?;
                restored.image_newline = Some(loaded.image_newline);
                Ok(restored)
            }
        }
    }
}
