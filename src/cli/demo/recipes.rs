//! The demo's recipes: ordinary recipe files (so each run is resumable, exportable and evaluable)
//! for stage 1 and stage 2 of each connector on the world, sized for a laptop CPU.

use std::path::Path;

/// Connectors the demo knows, with their `[connector]` table at demo size (vision width 64 with 4
/// heads and 65 tokens, LLM width 128).
pub const CONNECTORS: [&str; 4] = ["mlp2x_gelu", "c_abstractor", "resampler", "anchor_former"];
/// Compression methods of the sweep.
pub const COMPRESSIONS: [&str; 3] = ["none", "fastv", "act"];

/// The `[connector]` table and the feature selection a connector needs.
pub fn connector_table(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "mlp2x_gelu" => ("kind = \"mlp\"\ndepth = 2", "patch"),
        "c_abstractor" => ("kind = \"c_abstractor\"\ndepth = 1\nmlp_depth = 2\nhidden_size = 64\nnum_queries = 16", "patch"),
        "resampler" => ("kind = \"resampler\"\ndepth = 1\nheads = 4\ndim_head = 16\nnum_latents = 16\nff_mult = 2", "cls_patch"),
        // 4 heads × 4 anchors each + CLS (AcFormer's 16 × 9 + 1 at demo size).
        "anchor_former" => ("kind = \"anchor_former\"\nanchors = 17\ndepth = 1\nheads = 4\ndim_head = 16\nff_mult = 2", "cls_patch"),
        _ => return None,
    })
}

/// The `[compression]` table of a sweep entry on the demo's 2-layer LLM.
pub fn compression_table(name: &str) -> Option<&'static str> {
    Some(match name {
        "none" => "method = \"none\"",
        "fastv" => "method = \"fastv\"\nlayer = 1\nkeep_ratio = 0.25",
        "act" => "method = \"act\"\ncoverage = 0.5\nkeep_ratios = [0.25]",
        _ => return None,
    })
}

/// Samples per optimizer step of stage 1 (captions).
pub const PRETRAIN_GLOBAL_BATCH: usize = 16;
/// Samples per optimizer step of stage 2 (conversations). Both stages used 32 until 2026-12-02:
/// at 16, one epoch of the world's 2000 records is 125 steps instead of 63, which lifted the MLP
/// connector from 76.25% to 83.75% in about the same time (docs/demo.md).
pub const IFT_GLOBAL_BATCH: usize = 16;

/// The global batch of `stage` (`"pretrain"` or `"ift"`).
pub fn global_batch(stage: &str) -> usize {
    if stage == "ift" {
        IFT_GLOBAL_BATCH
    } else {
        PRETRAIN_GLOBAL_BATCH
    }
}

/// Whether `replicas` splits every stage's global batch evenly.
pub fn replicas_fit(replicas: usize) -> bool {
    replicas != 0 && PRETRAIN_GLOBAL_BATCH % replicas == 0 && IFT_GLOBAL_BATCH % replicas == 0
}

/// What varies between the demo's runs.
pub struct RunSpec<'a> {
    pub name: &'a str,
    pub stage: &'a str,
    pub connector: &'a str,
    pub compression: &'a str,
    /// Stage 2: the stage-1 export to start from.
    pub init: Option<&'a Path>,
    pub epochs: u32,
    pub max_steps: Option<u64>,
    /// CPU replicas (data parallel, each a thread): each stage's global batch is split between them.
    pub replicas: usize,
}

/// Data-parallel CPU replicas the demo uses on this machine: one per core, up to 4. burn-flex runs
/// elementwise ops on one thread, so a lone replica leaves the other cores mostly idle. The
/// replicas' summed gradients equal one device's up to float rounding (tests/data_parallel.rs;
/// the demo's first losses agree to 7 digits), so the numbers barely depend on the machine.
pub fn default_replicas() -> usize {
    match std::thread::available_parallelism().map(usize::from).unwrap_or(1) {
        0 | 1 => 1,
        2 | 3 => 2,
        _ => 4,
    }
}

/// A recipe file's text.
pub fn recipe(spec: &RunSpec<'_>, world: &Path, towers: &Path, runs: &Path, seed: u64) -> Option<String> {
    let (connector, features) = connector_table(spec.connector)?;
    let compression = compression_table(spec.compression)?;
    let ift = spec.stage == "ift";
    let init = spec.init.map(|p| format!("init = \"{}\"\n", p.display())).unwrap_or_default();
    let max_steps = spec.max_steps.map(|s| format!("max_steps = {s}\n")).unwrap_or_default();
    if !replicas_fit(spec.replicas) {
        return None;
    }
    let global = global_batch(spec.stage);
    let ids = (0..spec.replicas).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    Some(format!(
        r#"# Written by `train demo`: {stage} of the {connector} connector on the demo world.
[run]
name = "{name}"
stage = "{stage}"
seed = {seed}
output_dir = "{runs}"

[vision]
model = {{ path = "{vision}" }}
select_layer = -2
feature_select = "{features}"
dtype = "f32"

[llm]
model = {{ path = "{llm}" }}
training = "{training}"
dtype = "f32"
gradient_checkpointing = false

[connector]
{connector_table}
{init}
[compression]
{compression}

[data]
manifest = "{manifest}"
max_length = 512
workers = 2
group_by_modality_length = {ift}

[optim]
lr = {lr}
warmup_ratio = 0.05
global_batch = {global}
micro_batch = {micro}
epochs = {epochs}
{max_steps}
[devices]
ids = [{ids}]

[checkpoint]
every_steps = 1000000
keep_last = 1

[log]
every_steps = 10
tensorboard = true
"#,
        name = spec.name,
        stage = spec.stage,
        connector = spec.connector,
        runs = runs.display(),
        vision = towers.join("vision").display(),
        llm = towers.join("llm").display(),
        training = if ift { "full" } else { "frozen" },
        connector_table = connector,
        manifest = world.join(if ift { "ift.toml" } else { "pretrain.toml" }).display(),
        lr = if ift { "1e-3" } else { "2e-3" },
        epochs = spec.epochs,
        micro = global / spec.replicas,
    ))
}
