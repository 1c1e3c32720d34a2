//! What a finished run leaves beside its connector when the LLM trained through LoRA.

use std::path::Path;

use anchorage_model::Llava;
use burn::tensor::backend::Backend;

use crate::checkpoint::write_atomic;
use crate::recipe::LoraSection;
use crate::{Settings, TrainError};

/// Writes the LoRA adapters as PEFT loads them: `lora.safetensors` under PEFT's names and an
/// `adapter_config.json` beside it (each atomically, like every other export).
pub(crate) fn write_lora<B: Backend, V: Backend<Device = B::Device>>(run_dir: &Path, settings: &Settings, lora: &LoraSection, model: &Llava<B, V>) -> Result<(), TrainError> {
    model.write_lora(&run_dir.join("lora.safetensors"))?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": settings.llm_id(),
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.targets,
        "bias": "none",
        "fan_in_fan_out": false,
    });
    let path = run_dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&config).map_err(|source| TrainError::Json { path: path.clone(), source })?;
    write_atomic(&path, text.as_bytes())
}
