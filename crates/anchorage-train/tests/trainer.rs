//! The trainer on tiny built-in towers and an in-memory data set: the loss falls, checkpoints are
//! pruned, the export reloads, bad samples are skipped and counted, and a run stopped mid-way and
//! resumed repeats the uninterrupted run's losses bit for bit.

use std::path::Path;

use anchorage_data::{FaultReason, PixelValues, Sample, SampleFault, SampleResult, SampleSource, Skipped};
use anchorage_llm::LlamaConfig;
use anchorage_connectors::format as connector_file;
use anchorage_train::recipe::parse_recipe;
use anchorage_train::trainer::{TrainOptions, TrainSummary, Trainer, World};
use anchorage_train::{Plan, Settings};
use anchorage_model::CheckpointWeights;
use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};

type AD = Autodiff<Flex>;

/// 16 caption-like samples over 4 fixed patterns; sample 5 is "corrupt".
struct Synthetic;

impl SampleSource for Synthetic {
    fn len(&self) -> usize {
        16
    }
    fn load(&self, i: usize) -> SampleResult {
        if i == 5 {
            return Err(Skipped { id: format!("s{i}"), fault: SampleFault::new(FaultReason::CorruptImage, "test") });
        }
        let k = (i % 4) as i64;
        let caption: Vec<i64> = (0..6).map(|j| 10 + k * 7 + j).collect();
        let mut input_ids = vec![1, -200];
        input_ids.extend(&caption);
        let mut labels = vec![-100, -100];
        labels.extend(&caption);
        let data = (0..3 * 32 * 32).map(|p| ((p as i64 * (k + 1)) % 17) as f32 / 17.0 - 0.5).collect();
        Ok(Sample { id: format!("s{i}"), input_ids, labels, pixels: Some(PixelValues { size: 32, data }), anyres: None, mismatch: false })
    }
    fn modality_lengths(&self) -> Vec<i64> {
        vec![6; 16]
    }
    fn image_size(&self) -> usize {
        32
    }
    fn pad_id(&self) -> i64 {
        0
    }
}

fn recipe_text(run_dir: &Path, steps: u64, llm_extra: &str) -> String {
    format!(
        r#"
[run]
name = "{name}"
stage = "pretrain"
seed = 3
output_dir = "{out}"
[vision]
model = {{ builtin = "tiny" }}
feature_select = "cls_patch"
dtype = "f32"
[llm]
model = {{ builtin = "tiny" }}
{llm_dtype}
{llm_extra}
[connector]
kind = "anchor_former"
anchors = 9
depth = 1
heads = 2
dim_head = 16
ff_mult = 2
[data]
manifest = "{manifest}"
max_length = 64
workers = 2
[optim]
lr = 3e-3
warmup_ratio = 0.1
global_batch = 8
micro_batch = 4
max_steps = {steps}
[checkpoint]
every_steps = 2
keep_last = 2
[log]
tensorboard = true
"#,
        name = run_dir.file_name().unwrap().to_str().unwrap(),
        out = run_dir.parent().unwrap().display(),
        manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data-manifests/tiny/pretrain.toml"),
        llm_extra = llm_extra,
        // `llm_extra` may give its own dtype.
        llm_dtype = if llm_extra.contains("dtype") { "" } else { "dtype = \"f32\"" },
    )
}

fn run(run_dir: &Path, steps: u64, resume: bool, stop_after: Option<u64>) -> TrainSummary {
    run_with(run_dir, steps, resume, stop_after, "")
}

/// The backend's random generator is global to the process: tests that seed it and draw weights
/// must not interleave.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_with(run_dir: &Path, steps: u64, resume: bool, stop_after: Option<u64>, llm_extra: &str) -> TrainSummary {
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|p| p.into_inner());
    let recipe = parse_recipe(&recipe_text(run_dir, steps, llm_extra), Path::new("test.toml"), &[]).unwrap();
    let plan = Plan::new(&recipe).unwrap();
    let device = Default::default();
    // The composed model from the recipe's model sections (built-in tiny towers, 32 px images).
    let built = recipe.model_spec().build::<AD, Flex>(&device, None).unwrap();
    assert_eq!(built.model.image_size, 32);
    let settings = Settings::new(&recipe, &plan, World::single(), Synthetic.len(), 0);
    let options = TrainOptions { resume, stop_after, progress: false, bar: false, ..Default::default() };
    Trainer::new(&settings, built.model, &[device], &Synthetic, &options).unwrap().run().unwrap()
}

/// A run of `steps` stopped after 3 steps, then resumed in the same folder: the resumed summary.
fn stopped_after_3_then_resumed(run_dir: &Path, steps: u64, llm_extra: &str) -> TrainSummary {
    assert_eq!(run_with(run_dir, steps, false, Some(3), llm_extra).steps, 3);
    run_with(run_dir, steps, true, None, llm_extra)
}

#[test]
fn trains_checkpoints_exports_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let full_dir = dir.path().join("full");
    let full = run(&full_dir, 8, false, None);
    assert_eq!(full.steps, 8);
    assert_eq!(full.losses.len(), 8);
    let first: f64 = full.losses[..2].iter().sum::<f64>() / 2.0;
    let last: f64 = full.losses[6..].iter().sum::<f64>() / 2.0;
    // Only the connector trains, under a frozen random LLM: a clear but modest fall.
    assert!(last < first - 0.25, "loss should fall: {:?}", full.losses);

    // Sample 5 is visited once per epoch (16 samples, 2 steps of 8 per epoch, 4 epochs).
    assert_eq!(full.skipped.counts.get(&FaultReason::CorruptImage), Some(&4));
    assert_eq!(full.skipped.distinct.len(), 1, "one distinct sample, met once per epoch");
    let metrics = std::fs::read_to_string(full_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 8);
    assert!(metrics.contains("\"corrupt_image\":4"));
    assert!(full_dir.join("tensorboard").read_dir().unwrap().count() == 1);

    // Only the last two step checkpoints remain.
    let mut steps: Vec<String> = std::fs::read_dir(&full_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    assert_eq!(steps, vec!["step-00000006", "step-00000008"]);

    // The export reloads and says what it is.
    let path = full.connector.expect("exported at the end");
    // Loading builds a connector first (random init from the process-global generator): it takes
    // its turn like every other draw, or it would shift the other test's seeded stream.
    let (_connector, config, meta) = {
        let _one_at_a_time = SEEDED.lock().unwrap_or_else(|p| p.into_inner());
        connector_file::load::<Flex>(&path, &Default::default()).unwrap()
    };
    assert_eq!(config.kind(), "anchor_former");
    assert_eq!(meta.step, 8);

    // Stop after 3 steps (the last checkpoint is step 2), then resume to the end.
    let part_dir = dir.path().join("part");
    let stopped = run(&part_dir, 8, false, Some(3));
    assert_eq!(stopped.steps, 3);
    assert!(stopped.connector.is_none());
    let resumed = run(&part_dir, 8, true, None);
    assert_eq!(resumed.steps, 8);
    assert_eq!(resumed.losses, full.losses, "resumed run must repeat the uninterrupted losses bit for bit");
    let metrics = std::fs::read_to_string(part_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 8, "steps logged after the checkpoint are not duplicated");
}

#[test]
fn lora_checkpoints_hold_only_the_adapters_and_resume_exactly() {
    const LORA: &str = "training = \"lora\"\nlora = { rank = 4, alpha = 8.0, targets = [\"q_proj\", \"v_proj\", \"down_proj\"] }";
    const FULL: &str = "training = \"full\"";
    let dir = tempfile::tempdir().unwrap();
    let full = run_with(&dir.path().join("lora"), 6, false, None, LORA);
    let resumed = stopped_after_3_then_resumed(&dir.path().join("lora-part"), 6, LORA);
    assert_eq!(resumed.losses, full.losses, "a resumed LoRA run must repeat the uninterrupted losses bit for bit");

    // The frozen base stays out of LoRA checkpoints: smaller than the full-training checkpoint by
    // about the LLM's weights (the tiny LLM has ~200k parameters; the adapters a few thousand).
    let full_llm = run_with(&dir.path().join("full"), 2, false, None, FULL);
    assert_eq!(full_llm.steps, 2);
    let size = |run: &str, step: &str| std::fs::metadata(dir.path().join(run).join(step).join("trainable.bin")).unwrap().len();
    let (lora_bytes, full_bytes) = (size("lora", "step-00000006"), size("full", "step-00000002"));
    let llm_params = LlamaConfig::tiny();
    let llm_bytes = 4 * (llm_params.vocab_size * llm_params.hidden_size * 2) as u64;
    assert!(full_bytes > lora_bytes + llm_bytes, "LoRA checkpoint {lora_bytes} B, full {full_bytes} B");
}

/// Each LLM parameter of `trainable`: its dtype and its values in f32, in visiting order.
fn llm_params(trainable: &anchorage_model::Trainable<Flex>) -> Vec<(burn::tensor::DType, Vec<f32>)> {
    struct Collect(Vec<(burn::tensor::DType, Vec<f32>)>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<burn::tensor::Tensor<Flex, D>>) {
            let value = param.val();
            self.0.push((value.dtype(), value.cast(burn::tensor::FloatDType::F32).into_data().to_vec::<f32>().unwrap()));
        }
    }
    let mut c = Collect(Vec::new());
    trainable.llm.visit(&mut c);
    c.0
}

/// A bf16 LLM trained in full steps an f32 master copy (anchorage-model `Llava::llm_compute`); its
/// checkpoints hold that copy, so a resumed run repeats the uninterrupted losses and writes the same
/// step checkpoint byte for byte.
#[test]
fn a_bf16_llm_trained_in_full_resumes_exactly_from_its_f32_master() {
    const BF16_FULL: &str = "dtype = \"bf16\"\ntraining = \"full\"";
    let dir = tempfile::tempdir().unwrap();
    let full = run_with(&dir.path().join("bf16"), 4, false, None, BF16_FULL);
    let part = dir.path().join("bf16-part");
    let resumed = stopped_after_3_then_resumed(&part, 4, BF16_FULL);
    assert_eq!(resumed.losses, full.losses, "a resumed bf16 run must repeat the uninterrupted losses bit for bit");
    // The step-4 weights, read back into the model: the f32 master values, equal in both runs
    // (the record bytes differ: they carry parameter ids, which are drawn per process).
    let recipe = parse_recipe(&recipe_text(&part, 4, BF16_FULL), Path::new("test.toml"), &[]).unwrap();
    let weights = |run: &Path| -> Vec<(burn::tensor::DType, Vec<f32>)> {
        let _one_at_a_time = SEEDED.lock().unwrap_or_else(|p| p.into_inner());
        let device = Default::default();
        let model = recipe.model_spec().build::<Flex, Flex>(&device, None).unwrap().model;
        let path = run.join("step-00000004").join("trainable.bin");
        let trainable = CheckpointWeights::load_bytes(model.trainable, model.training, std::fs::read(&path).unwrap(), &path, &device).unwrap();
        llm_params(&trainable)
    };
    let (a, b) = (weights(&dir.path().join("bf16")), weights(&part));
    assert!(a.iter().all(|(dtype, _)| *dtype == burn::tensor::DType::F32), "the checkpoint holds the f32 master");
    assert!(a == b, "the resumed run's step-4 LLM weights differ from the uninterrupted run's");
}

/// A checkpoint written before the f32 master existed holds a bf16 run's LLM in bf16 itself. It
/// resumes into today's f32 master: the loaded master is f32 (the bf16 values, exactly), the first
/// resumed step computes on the same bf16 weights as the uninterrupted run and gives its loss bit
/// for bit, and the next one differs only by the master's lost low bits.
#[test]
fn a_checkpoint_of_an_older_bf16_run_resumes_into_the_f32_master() {
    use anchorage_train::checkpoint::Checkpoints;
    use burn::tensor::{DType, FloatDType};
    const BF16_FULL: &str = "dtype = \"bf16\"\ntraining = \"full\"";
    let dir = tempfile::tempdir().unwrap();
    let full = run_with(&dir.path().join("whole"), 4, false, None, BF16_FULL);
    let old = dir.path().join("old");
    assert_eq!(run_with(&old, 4, false, Some(2), BF16_FULL).steps, 2);

    let recipe = parse_recipe(&recipe_text(&old, 4, BF16_FULL), Path::new("test.toml"), &[]).unwrap();
    let llm_dtypes = |trainable: &anchorage_model::Trainable<Flex>| -> Vec<DType> { llm_params(trainable).into_iter().map(|(dtype, _)| dtype).collect() };
    let load = |path: &Path| {
        let _one_at_a_time = SEEDED.lock().unwrap_or_else(|p| p.into_inner());
        let model = recipe.model_spec().build::<Flex, Flex>(&Default::default(), None).unwrap().model;
        let trainable = CheckpointWeights::load_bytes(model.trainable.clone(), model.training, std::fs::read(path).unwrap(), path, &Default::default()).unwrap();
        (model, trainable)
    };

    // The step-2 checkpoint as the older anchorage wrote it: the LLM in bf16 (a new manifest).
    let step2 = old.join("step-00000002");
    let (mut model, trainable) = load(&step2.join("trainable.bin"));
    model.trainable = trainable;
    let bf16 = model.with_llm_cast(FloatDType::BF16);
    assert!(llm_dtypes(&bf16.trainable).iter().all(|d| *d == DType::BF16));
    let weights = CheckpointWeights::to_bytes(&bf16.trainable, model.training).unwrap();
    // Same parameters and ids, so only the values differ: the master's low bits are gone.
    assert_eq!(weights.len(), std::fs::read(step2.join("trainable.bin")).unwrap().len());
    assert_ne!(weights, std::fs::read(step2.join("trainable.bin")).unwrap());
    let names = ["optimizer.bin", "state.json", "recipe.toml", "connector.safetensors"];
    let kept: Vec<Vec<u8>> = names.iter().map(|n| std::fs::read(step2.join(n)).unwrap()).collect();
    std::fs::remove_dir_all(&step2).unwrap();
    let mut files: Vec<(&str, &[u8])> = vec![("trainable.bin", &weights)];
    files.extend(names.iter().copied().zip(kept.iter().map(Vec::as_slice)));
    Checkpoints::new(&old, 2).save(2, &files).unwrap();
    let (_, loaded) = load(&step2.join("trainable.bin"));
    assert!(llm_dtypes(&loaded).iter().all(|d| *d == DType::F32), "an older bf16 checkpoint loads into the f32 master");

    let resumed = run_with(&old, 4, true, None, BF16_FULL);
    assert_eq!(resumed.losses[..3], full.losses[..3], "step 3 computes on the same bf16 weights");
    let gap = (resumed.losses[3] - full.losses[3]).abs();
    assert!(gap < 1e-2 * full.losses[3].abs(), "step 4: {} against {} uninterrupted", resumed.losses[3], full.losses[3]);
}
