//! `--resume`: which checkpoint a run continues from. Step folders are tried newest first; one
//! counts only when it verifies against its manifest (`checkpoint.rs`) and its state, weights and
//! optimizer decode; each one passed over is logged with the reason. A recipe that changes a key
//! fixed for the life of the run is refused naming the keys; other changes need
//! `--allow-recipe-change` (`recipe/changes.rs`).
//!
//! Checkpoints written before manifests existed have none: such a checkpoint is accepted only
//! when all five of its files are present and decode completely (state, weights, optimizer), which
//! catches truncation but not damage that still decodes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use anchorage_model::{CheckpointWeights, Llava, Trainable};
use burn::optim::Optimizer;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::replica::{new_optimizer, AdamWOptimizer};
use super::state::TrainState;
use super::zero;
use crate::checkpoint::{verify, Checkpoints, MANIFEST};
use crate::recipe::{recipe_changes, RecipeChange};
use crate::{Settings, TrainError};

/// The files every checkpoint holds beside its manifest.
const FILES: [&str; 5] = ["trainable.bin", "optimizer.bin", "state.json", "recipe.toml", "connector.safetensors"];

/// A checkpoint read back, ready to continue from.
pub(super) struct Resumed<B: AutodiffBackend> {
    pub(super) step: u64,
    pub(super) dir: PathBuf,
    pub(super) state: TrainState,
    pub(super) trainable: Trainable<B>,
    pub(super) optim: AdamWOptimizer<B>,
    /// The optimizer state as read: `optimizer.bin`, or (ZeRO-1) this node's shards by local index.
    pub(super) optim_bytes: Vec<Vec<u8>>,
    /// Newer step folders that were passed over, and why.
    pub(super) rejected: Vec<(PathBuf, String)>,
    /// Keys the recipe changes since the checkpoint (allowed ones only).
    pub(super) changes: Vec<RecipeChange>,
}

/// The newest checkpoint of the run that verifies and loads into `model`; `None` when the run
/// folder has no step folder at all.
pub(super) fn newest<B: AutodiffBackend>(
    settings: &Settings,
    model: &Llava<B, B::InnerBackend>,
    checkpoints: &Checkpoints,
    allow_change: bool,
) -> Result<Option<Resumed<B>>, TrainError> {
    let all = checkpoints.list()?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut rejected: Vec<(PathBuf, String)> = Vec::new();
    for (step, dir) in all.into_iter().rev() {
        if let Err(why) = verified_or_legacy(&dir) {
            tracing::warn!(checkpoint = %dir.display(), reason = %why, "passing over a checkpoint that does not verify");
            rejected.push((dir, why));
            continue;
        }
        let saved = match std::fs::read_to_string(dir.join("recipe.toml")) {
            Ok(text) => text,
            Err(e) => {
                rejected.push((dir, format!("recipe.toml: {e}")));
                continue;
            }
        };
        let changes = recipe_changes(&saved, &settings.recipe_text).map_err(|message| TrainError::RecipeChanged { path: dir.join("recipe.toml"), message })?;
        check_zero(settings, &dir)?;
        check_changes(&changes, allow_change, &dir)?;
        match load(settings, model, step, &dir) {
            Ok((state, trainable, optim, optim_bytes)) => {
                return Ok(Some(Resumed { step, dir, state, trainable, optim, optim_bytes, rejected, changes }));
            }
            Err(why) => {
                tracing::warn!(checkpoint = %dir.display(), reason = %why, "passing over a checkpoint that does not load");
                rejected.push((dir, why));
            }
        }
    }
    let reasons = rejected.iter().map(|(dir, why)| format!("  {}: {why}", dir.display())).collect::<Vec<_>>().join("\n");
    Err(TrainError::NoVerifiedCheckpoint { run_dir: settings.run_dir.clone(), reasons })
}

/// A manifest that matches, or (for a checkpoint from before manifests) every file present.
fn verified_or_legacy(dir: &Path) -> Result<(), String> {
    if dir.join(MANIFEST).exists() {
        return verify(dir).map(|_| ());
    }
    match FILES.iter().find(|f| !dir.join(f).is_file()) {
        Some(missing) => Err(format!("no {MANIFEST}, and {missing} is missing")),
        None => {
            tracing::warn!(checkpoint = %dir.display(), "a checkpoint without {MANIFEST} (written by an older anchorage): accepted only if it decodes completely");
            Ok(())
        }
    }
}

/// Refuses a checkpoint whose optimizer state is laid out for another data-parallel world:
/// ZeRO-1 shards resume only on the world size they were cut for, and a whole optimizer state
/// does not resume sharded (or the reverse). A state.json that does not read is left to `load`.
fn check_zero(settings: &Settings, dir: &Path) -> Result<(), TrainError> {
    let Ok(state) = std::fs::read(dir.join("state.json")).map_err(|_| ()).and_then(|b| serde_json::from_slice::<TrainState>(&b).map_err(|_| ())) else {
        return Ok(());
    };
    let world = settings.plan.world_size;
    let now = zero::sharded(settings).then_some(world);
    let message = match (state.zero_world_size, now) {
        (saved, now) if saved == now => return Ok(()),
        (Some(saved), Some(now)) => format!(
            "the checkpoint's AdamW state is sharded (ZeRO-1) over a world of {saved} data-parallel ranks, and this run has a world of {now}: a sharded optimizer state resumes only on the world size it was saved with (devices.ids × devices.nodes = {saved}). Nothing was changed"
        ),
        (Some(saved), None) => format!(
            "the checkpoint's AdamW state is sharded (ZeRO-1) over a world of {saved} data-parallel ranks, and this run (a world of {world}, optim.zero_stage = {}) does not shard it: resume with optim.zero_stage = 1 on {saved} ranks. Nothing was changed",
            settings.optim.zero_stage
        ),
        (None, _) => format!(
            "the checkpoint holds the whole AdamW state (optim.zero_stage = 0), and this run shards it (ZeRO-1) over a world of {world}: resume with optim.zero_stage = 0. Nothing was changed"
        ),
    };
    Err(TrainError::Invalid { path: dir.join("state.json"), key: "optim.zero_stage".into(), message })
}

/// Refuses changes of fixed keys, and other changes unless they are allowed.
fn check_changes(changes: &[RecipeChange], allow: bool, dir: &Path) -> Result<(), TrainError> {
    let describe = |c: &RecipeChange| format!("{} ({} → {})", c.key, c.from.as_deref().unwrap_or("absent"), c.to.as_deref().unwrap_or("absent"));
    let path = dir.join("recipe.toml");
    let fixed: Vec<String> = changes.iter().filter(|c| c.is_fixed()).map(describe).collect();
    if !fixed.is_empty() {
        let message = format!(
            "cannot resume with a recipe that changes {}: these keys shape the model, the data order or the data-parallel world and are fixed for the life of a run; resume with the checkpoint's values (its recipe.toml) or start a new run (another run.name). Nothing was changed",
            fixed.join(", ")
        );
        return Err(TrainError::RecipeChanged { path, message });
    }
    if !changes.is_empty() && !allow {
        let list: Vec<String> = changes.iter().map(describe).collect();
        let message = format!(
            "the recipe differs from the checkpoint's in {}; pass --allow-recipe-change to resume with the new values (the change is recorded in recipe_changes.jsonl). Nothing was changed",
            list.join(", ")
        );
        return Err(TrainError::RecipeChanged { path, message });
    }
    Ok(())
}

/// What the leader writes about a resume: allowed recipe changes appended to
/// `recipe_changes.jsonl`, and the newer step folders that were passed over renamed out of the
/// way (`step-N.rejected-<unix time>`, kept for inspection; no longer a checkpoint).
pub(super) fn record<B: AutodiffBackend>(run_dir: &Path, r: &Resumed<B>) -> Result<(), TrainError> {
    if !r.changes.is_empty() {
        let line = serde_json::json!({
            "resumed_at_step": r.step,
            "checkpoint": r.dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            "changes": r.changes.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        });
        append_line(&run_dir.join("recipe_changes.jsonl"), &line.to_string())?;
        let keys: Vec<&str> = r.changes.iter().map(|c| c.key.as_str()).collect();
        tracing::warn!(keys = %keys.join(", "), "resuming with a changed recipe (recorded in recipe_changes.jsonl)");
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    for (dir, why) in &r.rejected {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = dir.with_file_name(format!("{name}.rejected-{stamp}"));
        std::fs::rename(dir, &aside).map_err(|source| TrainError::Io { path: dir.clone(), source })?;
        tracing::warn!(checkpoint = %dir.display(), moved_to = %aside.display(), reason = %why, "passed over a checkpoint that does not verify");
    }
    Ok(())
}

/// Appends one line to a run-folder log and syncs it.
fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    use std::io::Write;
    let io = |source| TrainError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

type Loaded<B> = (TrainState, Trainable<B>, AdamWOptimizer<B>, Vec<Vec<u8>>);

/// Reads the state, weights and optimizer of a checkpoint without touching the trainer: a
/// checkpoint that fails halfway leaves nothing half-loaded.
fn load<B: AutodiffBackend>(settings: &Settings, model: &Llava<B, B::InnerBackend>, step: u64, dir: &Path) -> Result<Loaded<B>, String> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let state: TrainState = serde_json::from_slice(&read("state.json")?).map_err(|e| format!("state.json: {e}"))?;
    if state.step != step {
        return Err(format!("state.json is of step {}, the folder of step {step}", state.step));
    }
    // ZeRO-1 (`check_zero` made sure the world size matches): the shards of this node's ranks,
    // the first of them this replica's; otherwise the one optimizer.bin.
    let first = settings.world.global_rank(0);
    let names = match state.zero_world_size {
        Some(_) => (first..first + settings.world.local).map(zero::shard_file).collect(),
        None => vec!["optimizer.bin".to_string()],
    };
    let weights = read("trainable.bin")?;
    let optim_bytes = names.iter().map(|name| read(name)).collect::<Result<Vec<_>, _>>()?;
    let path = dir.join("trainable.bin");
    let (trainable, optim) = quietly(|| {
        let trainable = CheckpointWeights::load_bytes(model.trainable.clone(), model.training, weights, &path, &model.device).map_err(|e| e.to_string())?;
        let ids = zero::param_ids(&trainable);
        let mut optims = names.iter().zip(&optim_bytes).map(|(name, bytes)| -> Result<AdamWOptimizer<B>, String> {
            let mut record = BinBytesRecorder::<FullPrecisionSettings>::default().load(bytes.clone(), &model.device).map_err(|e| format!("{name}: {e}"))?;
            if state.zero_world_size.is_some() {
                record = zero::by_id(record, &ids).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(new_optimizer::<B>(&settings.optim).load_record(record))
        });
        let own = optims.next().unwrap_or_else(|| Err("no optimizer state".into()))?;
        // This node's other shards are decoded too, so a damaged one is found before the run starts.
        optims.try_for_each(|o| o.map(drop))?;
        Ok((trainable, own))
    })?;
    Ok((state, trainable, optim, optim_bytes))
}

/// Runs `f`, turning a panic inside it (burn's recorder unwraps on some malformed input) into an
/// error, without the panic's message on stderr.
fn quietly<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    match result {
        Ok(r) => r,
        Err(panic) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(format!("does not decode ({what})"))
        }
    }
}
