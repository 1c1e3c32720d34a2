//! What a step checkpoint's weights record (`trainable.bin`) holds, per LLM training mode, plus
//! AnyRes's `image_newline` when the model has one.
//!
//! Without `image_newline` the file is the record it was before AnyRes existed, so older
//! checkpoints load as they did. With it, the file is that record, then `image_newline`'s own
//! record, its length (u64 little-endian) and [`NEWLINE_TAG`]: a model tells the two apart from
//! the tag alone, before decoding (burn's bytes recorder panics on a record that ends early).

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

/// The last bytes of a `trainable.bin` that holds an `image_newline`.
pub const NEWLINE_TAG: &[u8; 8] = b"ANLINE01";

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
        let bad = |e: burn::record::RecorderError| ModelError::Record { path: "trainable.bin".into(), message: e.to_string() };
        let mut bytes = recorder.record(Self::of(trainable, training).into_record(), ()).map_err(bad)?;
        if let Some(newline) = &trainable.image_newline {
            let tail = recorder.record(newline.clone().into_record(), ()).map_err(bad)?;
            bytes.extend_from_slice(&tail);
            bytes.extend_from_slice(&(tail.len() as u64).to_le_bytes());
            bytes.extend_from_slice(NEWLINE_TAG);
        }
        Ok(bytes)
    }

    /// `trainable` with the weights of `trainable.bin` bytes read from `path`.
    /// An AnyRes model (with `image_newline`) needs a checkpoint that holds one.
    pub fn load_bytes(trainable: Trainable<B>, training: LlmTraining, bytes: Vec<u8>, path: &Path, device: &B::Device) -> Result<Trainable<B>, ModelError> {
        let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
        let bad = |message: String| ModelError::Record { path: path.to_path_buf(), message };
        let (bytes, newline) = split_newline(bytes).map_err(bad)?;
        let image_newline = match (trainable.image_newline.clone(), newline) {
            (None, None) => None,
            (Some(param), Some(tail)) => Some(param.load_record(recorder.load(tail, device).map_err(|e| bad(e.to_string()))?)),
            (Some(_), None) => return Err(bad("holds no image_newline, which this AnyRes model needs (a checkpoint of a run without data.aspect = \"anyres\")".into())),
            (None, Some(_)) => return Err(bad("holds an image_newline: it is an AnyRes run's (data.aspect = \"anyres\"), not this model's".into())),
        };
        let record = recorder.load(bytes, device).map_err(|e| bad(e.to_string()))?;
        let mut restored = Self::of(&trainable, training).load_record(record).restore(trainable, training)?;
        restored.image_newline = image_newline;
        Ok(restored)
    }
}

/// `trainable.bin` bytes as (the weights record, the `image_newline` record if it has one).
fn split_newline(mut bytes: Vec<u8>) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    if !bytes.ends_with(NEWLINE_TAG) {
        return Ok((bytes, None));
    }
    let n = bytes.len() - NEWLINE_TAG.len();
    let len_at = n.checked_sub(8).ok_or("ends with the image_newline tag but has no length before it")?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[len_at..n]);
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|e| e.to_string())?;
    let start = len_at.checked_sub(len).ok_or_else(|| format!("its image_newline record claims {len} bytes, more than the file holds"))?;
    let tail = bytes[start..len_at].to_vec();
    bytes.truncate(start);
    Ok((bytes, Some(tail)))
}
