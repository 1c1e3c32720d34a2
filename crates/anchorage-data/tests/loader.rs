//! The training loader on the tiny data set (data-manifests/tiny/data), whose files hold
//! deliberate faults: skipped and counted by reason, deterministic per (seed, epoch), resumable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anchorage_data::{
    Aspect, Batch, ClipImageProcessor, DatasetConfig, FaultReason, LlavaDataset, LoadError, Loader, LoaderConfig,
    OverLength, SamplerKind, Template,
};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/tiny/data")
}

fn dataset(file: &str, template: Template, aspect: Aspect) -> Arc<LlavaDataset> {
    Arc::new(
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
        })
        .unwrap(),
    )
}

fn cfg(strict: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        sampler: SamplerKind::ModalityLengthGrouped,
        seed: 7,
        strict,
        threads: 2,
        ..LoaderConfig::default()
    }
}

fn all(ds: &Arc<LlavaDataset>, epoch: u64, start: usize) -> (Vec<Batch>, anchorage_data::FaultLog) {
    let mut loader = Loader::new(Arc::clone(ds), cfg(false), epoch, start).unwrap();
    let batches: Vec<Batch> = loader.by_ref().map(|b| b.unwrap()).collect();
    (batches, loader.faults())
}

#[test]
fn ift_faults_are_skipped_and_counted_and_text_only_rows_get_zero_images() {
    let ds = dataset("ift.json", Template::VicunaV1, Aspect::Pad);
    let (batches, faults) = all(&ds, 0, 0);
    let delivered: usize = batches.iter().map(|b| b.batch).sum();
    assert_eq!(delivered + faults.total(), 32);
    assert_eq!(faults.counts.get(&FaultReason::MissingImage), Some(&1));
    assert_eq!(faults.counts.get(&FaultReason::CorruptImage), Some(&2));
    assert_eq!(faults.counts.get(&FaultReason::BadImagePath), Some(&2));
    assert_eq!(faults.counts.get(&FaultReason::Malformed), Some(&1));
    assert_eq!(faults.counts.get(&FaultReason::OverLength), Some(&1));
    assert_eq!(faults.first_ids[&FaultReason::MissingImage], vec!["bad-missing-image".to_string()]);
    let mut text_rows = 0;
    let mut unsupervised = 0;
    for b in &batches {
        assert!(b.batch <= 4 && b.seq_len <= 128);
        for r in 0..b.batch {
            let plane = 3 * 16 * 16;
            let px = &b.pixel_values[r * plane..(r + 1) * plane];
            if b.has_image[r] {
                assert!(px.iter().any(|&v| v != 0.0));
                assert_eq!(b.image_positions[r].len(), 1, "{}", b.ids[r]);
            } else {
                text_rows += 1;
                assert!(px.iter().all(|&v| v == 0.0));
                assert!(b.image_positions[r].is_empty());
            }
            // Supervised tokens exist and padding is neither attended nor supervised.
            let row = r * b.seq_len..(r + 1) * b.seq_len;
            if !b.label_mask[row.clone()].iter().any(|&m| m) {
                unsupervised += 1;
            }
            for i in row {
                if !b.attention_mask[i] {
                    assert!(!b.label_mask[i]);
                }
            }
        }
    }
    assert_eq!(text_rows, 5);
    // Rows without a supervised token are exactly LLaVA's mismatches (kept, all labels ignored).
    assert_eq!(unsupervised, faults.mismatched_kept);
    eprintln!("mismatched samples kept: {}", faults.mismatched_kept);
}

#[test]
fn order_is_deterministic_per_epoch_and_resumable() {
    let ds = dataset("pretrain.json", Template::Plain, Aspect::Square);
    let (a, fa) = all(&ds, 0, 0);
    let (b, _) = all(&ds, 0, 0);
    assert_eq!(a, b);
    assert_eq!(fa.total(), 7);
    let (c, _) = all(&ds, 1, 0);
    let ids = |v: &[Batch]| v.iter().flat_map(|b| b.ids.clone()).collect::<Vec<_>>();
    assert_ne!(ids(&a), ids(&c), "another epoch, another order");
    // Resume after the second batch: the rest is identical.
    let (rest, _) = all(&ds, 0, a[1].next_position);
    assert_eq!(rest, a[2..].to_vec());
}

#[test]
fn strict_mode_stops_at_the_first_fault() {
    let ds = dataset("pretrain.json", Template::Plain, Aspect::Square);
    let loader = Loader::new(ds, cfg(true), 0, 0).unwrap();
    let mut saw_error = false;
    for b in loader {
        if let Err(e) = b {
            assert!(matches!(e, LoadError::Strict { .. }), "{e}");
            assert!(e.to_string().contains("bad-"), "{e}");
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
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
    }
}
