use std::collections::HashSet;
use std::path::Path;

use anchorage_data::Manifest;

use super::{Backend, DataSection, DevicesSection, MatmulEngine, OptimSection, Recipe};
use crate::TrainError;

/// More samples than this in one optimizer step (micro_batch × devices) is a typo, not a recipe;
/// refusing it also keeps the product from overflowing.
const MAX_SAMPLES_PER_STEP: u64 = 1 << 32;

/// Checks what serde cannot: one model source each, existing local files, ranges and batch
/// arithmetic. Files that only a real run needs (the data root, hub downloads, and
/// `connector.init`, which stage 1 produces) are not required here, so a dry run works on a
/// machine without them; the plan reports whether they are present.
pub(super) fn validate(recipe: &Recipe, origin: &Path) -> Result<(), TrainError> {
    let invalid = |(key, message): (String, String)| TrainError::Invalid { path: origin.to_path_buf(), key, message };
    recipe.model_spec().check().map_err(invalid)?;
    check_trained_dtype(recipe).map_err(invalid)?;
    let data = &recipe.data;
    if !data.manifest.is_file() {
        return Err(invalid(("data.manifest".into(), format!("file {} does not exist", data.manifest.display()))));
    }
    Manifest::load(&data.manifest)?;
    check_data(data).map_err(invalid)?;
    check_optim(&recipe.optim).map_err(invalid)?;
    check_batch(&recipe.optim, &recipe.devices).map_err(invalid)?;
    check_logging(recipe).map_err(invalid)?;
    check_run_name(&recipe.run.name).map_err(|m| invalid(("run.name".into(), m)))
}

/// A problem with a key: (the key, what is wrong).
type KeyError = (String, String);

fn bad(key: &str, message: impl Into<String>) -> Result<(), KeyError> {
    Err((key.to_string(), message.into()))
}

/// Parameters AdamW steps must not be f16: its epsilon (1e-8) and squared gradients below 6e-8
/// round to zero there, so the first update divides zero by zero and every weight turns NaN
/// (measured: a demo stage 2 with the LLM in full, loss NaN from step 2 on flex and on wgpu alike).
/// The connector and LoRA adapters are not f16 whatever the towers' dtype; a fully trained LLM is.
/// Evaluating such a run in f16 (`--set llm.dtype="f16"`) is not affected: this checks recipes.
fn check_trained_dtype(recipe: &Recipe) -> Result<(), KeyError> {
    use super::{Dtype, LlmTraining};
    if recipe.llm.training == LlmTraining::Full && recipe.llm.dtype == Dtype::F16 {
        return bad(
            "llm.dtype",
            "\"f16\" with `llm.training = \"full\"`: AdamW's state underflows in f16 and the weights turn NaN after the first update; \
             train the LLM in \"bf16\" (LLaVA's choice) or \"f32\" (f16 works for a frozen LLM or LoRA)",
        );
    }
    Ok(())
}

fn check_data(data: &DataSection) -> Result<(), KeyError> {
    if data.max_length < 2 {
        return bad("data.max_length", format!("{} must be at least 2", data.max_length));
    }
    if data.workers == 0 {
        return bad("data.workers", "must be at least 1");
    }
    Ok(())
}

/// AdamW, the schedule and the step counts.
fn check_optim(o: &OptimSection) -> Result<(), KeyError> {
    if !(o.lr > 0.0 && o.lr.is_finite()) {
        return bad("optim.lr", format!("{} must be a positive number", o.lr));
    }
    if !(o.weight_decay >= 0.0) {
        return bad("optim.weight_decay", format!("{} must be ≥ 0", o.weight_decay));
    }
    for (i, b) in o.betas.iter().enumerate() {
        if !(0.0..1.0).contains(b) {
            return bad(&format!("optim.betas[{i}]"), format!("{b} must be in [0, 1)"));
        }
    }
    if !(o.eps > 0.0) {
        return bad("optim.eps", format!("{} must be positive", o.eps));
    }
    if !(0.0..1.0).contains(&o.warmup_ratio) {
        return bad("optim.warmup_ratio", format!("{} must be in [0, 1)", o.warmup_ratio));
    }
    if !(o.grad_clip >= 0.0) {
        return bad("optim.grad_clip", format!("{} must be ≥ 0 (0 disables clipping)", o.grad_clip));
    }
    if o.micro_batch == 0 {
        return bad("optim.micro_batch", "must be at least 1");
    }
    if o.epochs == Some(0) {
        return bad("optim.epochs", "must be at least 1");
    }
    if o.max_steps == Some(0) {
        return bad("optim.max_steps", "must be at least 1");
    }
    Ok(())
}

/// The devices, the ZeRO stage over them, and the batch sizes.
fn check_batch(o: &OptimSection, d: &DevicesSection) -> Result<(), KeyError> {
    if d.ids.is_empty() {
        return bad("devices.ids", "give at least one device index");
    }
    if d.ids.iter().collect::<HashSet<_>>().len() != d.ids.len() {
        return bad("devices.ids", format!("{:?} lists a device twice", d.ids));
    }
    if d.nodes == 0 {
        return bad("devices.nodes", "must be at least 1");
    }
    if d.matmul == MatmulEngine::Cublas && d.backend != Backend::Cuda {
        let backend = if d.backend == Backend::Wgpu { "wgpu" } else { "flex" };
        return bad("devices.matmul", format!("\"cublas\" runs on devices.backend = \"cuda\" only (this recipe has \"{backend}\"); use \"burn\" there"));
    }
    if o.zero_stage > 1 {
        let message = format!("{} is not a ZeRO stage anchorage has: 0 (every rank keeps the whole AdamW state) or 1 (the state sharded across the data-parallel ranks)", o.zero_stage);
        return bad("optim.zero_stage", message);
    }
    let world = d.world_size();
    let Some(per_step) = o.micro_batch.checked_mul(world).filter(|&n| n <= MAX_SAMPLES_PER_STEP) else {
        return bad("optim.micro_batch", format!("micro_batch × devices = {} × {world} is larger than {MAX_SAMPLES_PER_STEP} samples per step", o.micro_batch));
    };
    if o.global_batch == 0 || o.global_batch % per_step != 0 {
        return bad(
            "optim.global_batch",
            format!(
                "{} must be a positive multiple of micro_batch × devices = {} × {world} = {per_step} (gradient accumulation = global / (micro × devices))",
                o.global_batch, o.micro_batch
            ),
        );
    }
    Ok(())
}

/// Checkpoints, logging and the divergence limit.
fn check_logging(recipe: &Recipe) -> Result<(), KeyError> {
    if recipe.checkpoint.every_steps == 0 {
        return bad("checkpoint.every_steps", "must be at least 1");
    }
    if recipe.checkpoint.keep_last == 0 {
        return bad("checkpoint.keep_last", "must be at least 1");
    }
    if recipe.log.every_steps == 0 {
        return bad("log.every_steps", "must be at least 1");
    }
    if recipe.optim.max_nonfinite_steps == 0 {
        return bad("optim.max_nonfinite_steps", "must be at least 1");
    }
    Ok(())
}

/// A run name is one plain folder name: not empty, no separators, not `.` or `..`, not one of
/// the names the run folder uses for temporary files.
fn check_run_name(name: &str) -> Result<(), String> {
    let plain = matches!(Path::new(name).components().collect::<Vec<_>>().as_slice(), [std::path::Component::Normal(_)]);
    if name.is_empty() || !plain || name.contains(['/', '\\', '\0']) || name.starts_with(anchorage_tensors::TMP_PREFIX) {
        return Err(format!("`{name}` must be one plain folder name (no slashes, not `.` or `..`, not starting with `{}`)", anchorage_tensors::TMP_PREFIX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_names_are_one_plain_path_component() {
        for bad in ["", ".", "..", "a/b", "/abs", "a\\b", ".tmp-x", "x/.."] {
            assert!(super::check_run_name(bad).is_err(), "{bad:?}");
        }
        for good in ["tiny-pretrain", "run.v2", "..a"] {
            assert!(super::check_run_name(good).is_ok(), "{good:?}");
        }
    }
}
