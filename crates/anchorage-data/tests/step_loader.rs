//! The step loader on the tiny data set (data-manifests/tiny/data), whose files hold deliberate
//! faults: every position of an epoch is read once, bad samples come back as counted faults (never
//! replaced by later positions), and the reading is deterministic per (seed, epoch) and per step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_data::{
    Aspect, ClipImageProcessor, DatasetConfig, FaultReason, LlavaDataset, LoadedStep, OverLength, SampleSource, SamplerKind, StepLayout,
    Template,
};
use anchorage_data::text::IMAGE_TOKEN_INDEX;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/tiny/data")
}

fn dataset(file: &str, template: Template, aspect: Aspect) -> LlavaDataset {
    LlavaDataset::open(DatasetConfig {
        annotations: data().join(file),
        image_root: data().join("images"),
        tokenizer: data().join("tokenizer.json"),
        template,
        aspect,
        processor: ClipImageProcessor::with_size(16),
        max_len: 128,
        image_tokens: 16,
        over_length: OverLength::Skip,
        anyres: None,
    })
    .unwrap()
}

fn layout() -> StepLayout {
    StepLayout {
        global_batch: 8,
        micro_batch: 4,
        steps_per_epoch: 4,
        sampler: SamplerKind::ModalityLengthGrouped,
        seed: 7,
        world_size: 1,
        first_rank: 0,
        local: 1,
        grad_accum: 2,
        workers: 2,
    }
}

/// Every step of one epoch, loaded through the background loop.
fn epoch(ds: &LlavaDataset, first: u64, last: u64) -> Vec<LoadedStep> {
    let l = layout();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|scope| {
        let l = &l;
        // The sender moves into the loader thread: the channel closes when it is done.
        scope.spawn(move || l.run(ds, first, last, &tx));
        rx.iter().collect()
    })
}

fn counts(steps: &[LoadedStep]) -> (usize, BTreeMap<FaultReason, usize>) {
    let (mut ok, mut faults) = (0, BTreeMap::new());
    for r in steps.iter().flat_map(|s| s.per_rank.iter().flatten().flatten()) {
        match r {
            Ok(_) => ok += 1,
            Err(skip) => *faults.entry(skip.fault.reason).or_default() += 1,
        }
    }
    (ok, faults)
}

#[test]
fn ift_faults_come_back_counted_in_their_slice_and_text_only_samples_have_no_pixels() {
    let ds = dataset("ift.json", Template::VicunaV1, Aspect::Pad);
    let steps = epoch(&ds, 0, 4);
    let (ok, faults) = counts(&steps);
    assert_eq!(ok + faults.values().sum::<usize>(), 32, "every position read once");
    assert_eq!(faults.get(&FaultReason::MissingImage), Some(&1));
    assert_eq!(faults.get(&FaultReason::CorruptImage), Some(&2));
    assert_eq!(faults.get(&FaultReason::BadImagePath), Some(&2));
    assert_eq!(faults.get(&FaultReason::Malformed), Some(&1));
    assert_eq!(faults.get(&FaultReason::OverLength), Some(&1));
    let missing: Vec<_> = steps.iter().flat_map(|s| s.per_rank.iter().flatten().flatten()).filter_map(|r| r.as_ref().err()).filter(|s| s.fault.reason == FaultReason::MissingImage).collect();
    assert_eq!(missing[0].id, "bad-missing-image");
    let mut text_only = 0;
    for s in steps.iter().flat_map(|s| s.per_rank.iter().flatten().flatten()).filter_map(|r| r.as_ref().ok()) {
        let placeholders = s.input_ids.iter().filter(|&&t| t == IMAGE_TOKEN_INDEX).count();
        match &s.pixels {
            Some(p) => {
                assert_eq!(placeholders, 1, "{}", s.id);
                assert_eq!(p.data.len(), 3 * 16 * 16);
            }
            None => {
                text_only += 1;
                assert_eq!(placeholders, 0, "{}", s.id);
            }
        }
        assert!(s.labels.iter().any(|&l| l >= 0), "{}: a delivered sample is supervised", s.id);
        assert!(s.input_ids.len() <= 128);
    }
    assert_eq!(text_only, 5);
}

#[test]
fn reading_is_deterministic_per_epoch_and_a_resumed_loop_repeats_the_rest() {
    let ds = dataset("pretrain.json", Template::Plain, Aspect::Square);
    let ids = |steps: &[LoadedStep]| -> Vec<String> {
        steps.iter().flat_map(|s| s.per_rank.iter().flatten().flatten()).map(|r| match r {
            Ok(s) => s.id.clone(),
            Err(skip) => skip.id.clone(),
        }).collect()
    };
    let a = epoch(&ds, 0, 8);
    assert_eq!(ids(&a), ids(&epoch(&ds, 0, 8)));
    assert_eq!(counts(&a[..4]).1.values().sum::<usize>(), 7, "the pretrain file's seven bad records");
    assert_ne!(ids(&a[..4]), ids(&a[4..]), "another epoch, another order");
    // Resume at step 3: the rest is identical, sample for sample.
    let rest = epoch(&ds, 3, 8);
    assert_eq!(rest[0].step, 3);
    assert_eq!(ids(&rest), ids(&a[3..]));
    let (x, y): (Vec<_>, Vec<_>) = (rest.iter().flat_map(|s| s.per_rank.iter().flatten().flatten()).filter_map(|r| r.as_ref().ok()).collect(), a[3..].iter().flat_map(|s| s.per_rank.iter().flatten().flatten()).filter_map(|r| r.as_ref().ok()).collect());
    assert_eq!(x, y);
}

#[test]
fn tiny_manifests_count_exactly_their_expected_samples() {
    use anchorage_data::{Manifest, SampleCountSource};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/tiny");
    for name in ["pretrain.toml", "ift.toml"] {
        let path = dir.join(name);
        let m = Manifest::load(&path).unwrap();
        let root = m.data_root(&path, None).unwrap();
        let c = m.sample_count(Some(&root)).unwrap();
        assert!(matches!(c.source, SampleCountSource::Counted { .. }), "{name}");
        assert_eq!(c.count, 32, "{name}");
        assert_eq!(c.count, m.expected_samples, "{name}");
        assert_eq!(SampleSource::len(&dataset(if name == "ift.toml" { "ift.json" } else { "pretrain.json" }, Template::Plain, Aspect::Square)), 32);
    }
}

/// LLaVA has one image per sample: a record whose turns would give two `<image>` placeholders is
/// skipped as malformed (naming the turns), and a record with an image but no `<image>` in its turns
/// trains on the text alone, as LLaVA leaves such an image unused. `data check` finds the first.
#[test]
fn image_placeholders_must_match_the_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let turn = |from: &str, value: &str| serde_json::json!({"from": from, "value": value});
    let records = serde_json::json!([
        {"id": "two-tags", "image": "img01.png", "conversations": [
            turn("human", "<image>\nWhat is it?"), turn("gpt", "A bottle."),
            turn("human", "<image>\nAnd now?"), turn("gpt", "Still a bottle.")]},
        {"id": "no-tag", "image": "img01.png", "conversations": [
            turn("human", "What is it?"), turn("gpt", "A bottle.")]},
        {"id": "one-tag", "image": "img01.png", "conversations": [
            turn("human", "What is it?\n<image>"), turn("gpt", "A bottle.")]},
    ]);
    let annotations = dir.path().join("records.json");
    std::fs::write(&annotations, records.to_string()).unwrap();
    let ds = LlavaDataset::open(DatasetConfig {
        annotations: annotations.clone(),
        image_root: data().join("images"),
        tokenizer: data().join("tokenizer.json"),
        template: Template::VicunaV1,
        aspect: Aspect::Pad,
        processor: ClipImageProcessor::with_size(16),
        max_len: 256,
        image_tokens: 16,
        over_length: OverLength::Skip,
        anyres: None,
    })
    .unwrap();
    let (id, fault) = ds.get(0).unwrap_err();
    assert_eq!((id.as_str(), fault.reason), ("two-tags", FaultReason::Malformed));
    assert!(fault.detail.contains("2 turns mention <image>"), "{}", fault.detail);
    let text_only = ds.get(1).unwrap();
    assert!(text_only.pixels.is_none() && !text_only.input_ids.contains(&IMAGE_TOKEN_INDEX));
    let one = ds.get(2).unwrap();
    assert!(one.pixels.is_some());
    assert_eq!(one.input_ids.iter().filter(|&&t| t == IMAGE_TOKEN_INDEX).count(), 1);
}
