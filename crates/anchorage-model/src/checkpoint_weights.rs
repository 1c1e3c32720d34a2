//! What a step checkpoint's weights record (`trainable.bin`) holds, per LLM training mode.

use std::path::Path;

use anchorage_connectors::Connector;
use anchorage_llm::{Llm, LoraAdapter};
use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;

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
        Ok(Trainable { connector: self.connector, llm })
    }

    /// The weights of `trainable` as `trainable.bin` bytes.
    pub fn to_bytes(trainable: &Trainable<B>, training: LlmTraining) -> Result<Vec<u8>, ModelError> {
        BinBytesRecorder::<FullPrecisionSettings>::default()
            .record(Self::of(trainable, training).into_record(), ())
            .map_err(|e| ModelError::Record { path: "trainable.bin".into(), message: e.to_string() })
    }

    /// `trainable` with the weights of `trainable.bin` bytes read from `path`.
    pub fn load_bytes(trainable: Trainable<B>, training: LlmTraining, bytes: Vec<u8>, path: &Path, device: &B::Device) -> Result<Trainable<B>, ModelError> {
        let record = BinBytesRecorder::<FullPrecisionSettings>::default()
            .load(bytes, device)
            .map_err(|e| ModelError::Record { path: path.to_path_buf(), message: e.to_string() })?;
        Self::of(&trainable, training).load_record(record).restore(trainable, training)
    }
}
