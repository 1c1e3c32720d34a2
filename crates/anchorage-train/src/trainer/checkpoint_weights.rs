//! What a step checkpoint's weights record holds, per LLM training mode.

use anchorage_connectors::Connector;
use anchorage_llm::{LoraAdapter, Llm};
use burn::module::Module;
use burn::tensor::backend::Backend;

use super::step::{model_err, Trainable};
use crate::TrainError;

/// What a step checkpoint's `trainable.bin` holds: the connector, the LLM when it trains in full,
/// and under LoRA only the adapters (the frozen base is rebuilt from the recipe on resume, so a 7B
/// base costs nothing per checkpoint).
#[derive(Module, Debug)]
pub(super) struct CheckpointWeights<B: Backend> {
    connector: Connector<B>,
    llm: Option<Llm<B>>,
    adapters: Vec<Option<LoraAdapter<B>>>,
}

impl<B: Backend> CheckpointWeights<B> {
    pub(super) fn of(trainable: &Trainable<B>, lora: bool) -> Self {
        match (&trainable.llm, lora) {
            (Some(llm), true) => Self { connector: trainable.connector.clone(), llm: None, adapters: llm.lora_adapters() },
            (llm, _) => Self { connector: trainable.connector.clone(), llm: llm.clone(), adapters: Vec::new() },
        }
    }

    /// `trainable` with these weights (its own frozen base kept under LoRA).
    pub(super) fn restore(self, trainable: Trainable<B>, lora: bool) -> Result<Trainable<B>, TrainError> {
        Ok(match (trainable.llm, lora) {
            (Some(llm), true) => Trainable { connector: self.connector, llm: Some(llm.with_lora_adapters(self.adapters).map_err(model_err)?) },
            _ => Trainable { connector: self.connector, llm: self.llm },
        })
    }
}
