//! Kept indices equal those of the committed generator (tests/fixtures/compress/generate.py), which
//! transcribes FastV's and HiMAP's selection code in PyTorch on seeded random attention maps:
//! first the plain rules, then the hooks themselves, driven through the seam's calls with those
//! maps as the attention rows, on a right-padded batch whose samples have different image spans
//! (the references only ever look at batch element 0).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anchorage_compress::rules::{head_mean, prune_positions};
use anchorage_compress::{ActConfig, ActSelection, CompressError, CompressionPolicy, FastVConfig, FastVRule, HimapConfig, ScoreRule};
use anchorage_llm::{read_tensors, AttentionRows, LayerHooks, SampleLayout, SeqLayout};
use burn::prelude::*;
use burn::tensor::TensorData;

type B = burn::backend::Flex;

struct Map {
    /// Head mean `[len, len]`.
    mean: Vec<f64>,
    len: usize,
    start: usize,
    image: usize,
    keep: usize,
    tensors: BTreeMap<String, TensorData>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/compress").join(name)
}

fn ints(t: &TensorData) -> Vec<usize> {
    t.clone().convert::<i64>().to_vec::<i64>().unwrap().into_iter().map(|v| v as usize).collect()
}

fn mean_of(t: &TensorData) -> (Vec<f64>, usize) {
    let [_, h, l, _] = t.shape[..] else { panic!("shape {:?}", t.shape) };
    let probs = t.clone().convert::<f32>().to_vec::<f32>().unwrap();
    (head_mean(&probs, h, l).unwrap(), l)
}

fn load(name: &str) -> Map {
    let tensors = read_tensors(&fixture(&format!("map_{name}.safetensors"))).unwrap();
    let (mean, len) = mean_of(&tensors["attention"]);
    Map {
        mean,
        len,
        start: ints(&tensors["image_start"])[0],
        image: ints(&tensors["image_len"])[0],
        keep: ints(&tensors["keep"])[0],
        tensors,
    }
}

#[test]
fn rules_match_the_transcribed_upstream_code() {
    for name in ["small", "batch_b", "medium", "llava_like"] {
        let m = load(name);
        for (rule, key) in [
            (ScoreRule::LastToken, "keep_last_token"),
            (ScoreRule::TextToImage, "keep_text_to_image"),
            (ScoreRule::ImageToImage, "keep_image_to_image"),
            (ScoreRule::AverageReceived, "keep_average_received"),
        ] {
            let ours = prune_positions(&m.mean, m.len, m.start..m.start + m.image, rule, m.keep);
            assert_eq!(ours, ints(&m.tensors[key]), "{name} {rule:?}");
        }
    }
}

/// Runs one scoring layer of a hook: asks what rows it wants, hands it those rows of the given
/// head-mean maps (one per sample, padded with zeros), returns what it keeps.
fn drive(hooks: &mut dyn LayerHooks<B>, layer: usize, layout: &SeqLayout, maps: &[(&[f64], usize)]) -> Option<Vec<Vec<usize>>> {
    let request = hooks.before_layer(layer, layout).unwrap();
    let rows = request.rows.expect("the scoring layer asks for rows");
    let count = rows.iter().map(Vec::len).max().unwrap();
    let padded = layout.padded_len;
    let mut probs = vec![0f32; rows.len() * count * padded];
    for (b, (wanted, (mean, len))) in rows.iter().zip(maps).enumerate() {
        for r in 0..count {
            let q = *wanted.get(r).unwrap_or(wanted.last().unwrap());
            for k in 0..*len {
                probs[(b * count + r) * padded + k] = mean[q * len + k] as f32;
            }
        }
    }
    let device = Default::default();
    let probs = Tensor::<B, 3>::from_data(TensorData::new(probs, [rows.len(), count, padded]), &device);
    hooks.attention_rows(layer, layout, AttentionRows { probs, rows }).unwrap();
    let hidden = Tensor::<B, 3>::zeros([layout.samples.len(), padded, 4], &device);
    hooks.after_layer(layer, layout, &hidden).unwrap()
}

fn batch_layout(maps: &[&Map]) -> SeqLayout {
    SeqLayout {
        samples: maps
            .iter()
            .map(|m| SampleLayout {
                index: (0..m.len).collect(),
                image: m.start..m.start + m.image,
            })
            .collect(),
        padded_len: maps.iter().map(|m| m.len).max().unwrap(),
    }
}

#[test]
fn fastv_hooks_select_per_sample_like_the_reference() {
    let (a, b) = (load("small"), load("batch_b"));
    let layout = batch_layout(&[&a, &b]);
    // 0.45 keeps round(4.5) = 4 of 10 and round(3.6) = 4 of 8, the fixtures' k.
    for (rule, key) in [(FastVRule::LastToken, "keep_last_token"), (FastVRule::AverageReceived, "keep_average_received")] {
        let config = FastVConfig { layer: 2, keep_ratio: 0.45, rule };
        let mut hooks = config.hooks(4).unwrap();
        assert!(hooks_idle(&mut hooks, 0, &layout), "layer 0 asks nothing");
        let keep = drive(&mut hooks, 1, &layout, &[(&a.mean, a.len), (&b.mean, b.len)]).expect("prunes");
        assert_eq!(keep[0], ints(&a.tensors[key]), "{rule:?} sample 0");
        assert_eq!(keep[1], ints(&b.tensors[key]), "{rule:?} sample 1");
        assert_eq!(hooks.trace.selections[0].kept_images[1].len(), 4);
    }
}

fn hooks_idle(hooks: &mut dyn LayerHooks<B>, layer: usize, layout: &SeqLayout) -> bool {
    hooks.before_layer(layer, layout).unwrap() == Default::default()
}

#[test]
fn himap_hooks_score_each_rule_per_sample() {
    let (a, b) = (load("small"), load("batch_b"));
    let layout = batch_layout(&[&a, &b]);
    let maps = [(&a.mean[..], a.len), (&b.mean[..], b.len)];
    // Shallow at K1 = 1: text-to-image.
    let config = HimapConfig { shallow_layer: 1, shallow_keep_ratio: 0.45, deep_layer: 3, deep_keep_ratio: 0.45 };
    let mut hooks = config.hooks(4).unwrap();
    let keep = drive(&mut hooks, 0, &layout, &maps).unwrap();
    assert_eq!(keep[0], ints(&a.tensors["keep_text_to_image"]));
    assert_eq!(keep[1], ints(&b.tensors["keep_text_to_image"]));
    // Deep at K2 = 3 on the unpruned maps: image-to-image over the whole image span.
    let mut hooks = config.hooks(4).unwrap();
    let keep = drive(&mut hooks, 2, &layout, &maps).unwrap();
    assert_eq!(keep[0], ints(&a.tensors["keep_image_to_image"]));
    assert_eq!(keep[1], ints(&b.tensors["keep_image_to_image"]));
}

#[test]
fn himap_two_stages_match_the_reference_run() {
    let t = read_tensors(&fixture("himap_two_stage.safetensors")).unwrap();
    let (shallow, len) = mean_of(&t["attention_shallow"]);
    let (deep, len1) = mean_of(&t["attention_deep"]);
    let start = ints(&t["image_start"])[0];
    let n = ints(&t["image_len"])[0];
    let ratio = |k: &str| t[k].clone().convert::<f64>().to_vec::<f64>().unwrap()[0];
    let config = HimapConfig {
        shallow_layer: 2,
        shallow_keep_ratio: ratio("ratio_shallow"),
        deep_layer: 5,
        deep_keep_ratio: ratio("ratio_deep"),
    };
    let mut hooks = config.hooks(6).unwrap();
    let mut layout = SeqLayout {
        samples: vec![SampleLayout { index: (0..len).collect(), image: start..start + n }],
        padded_len: len,
    };
    assert!(hooks_idle(&mut hooks, 0, &layout));
    let keep1 = drive(&mut hooks, 1, &layout, &[(&shallow, len)]).unwrap();
    assert_eq!(keep1[0], ints(&t["keep_shallow"]));
    // What the LLM's loop does with the keep list.
    layout.samples[0].index = keep1[0].iter().map(|&c| layout.samples[0].index[c]).collect();
    layout.padded_len = keep1[0].len();
    assert_eq!(layout.padded_len, len1);
    for layer in 2..4 {
        assert!(hooks_idle(&mut hooks, layer, &layout));
    }
    let keep2 = drive(&mut hooks, 4, &layout, &[(&deep, len1)]).unwrap();
    let positions: Vec<usize> = keep2[0].iter().map(|&c| layout.samples[0].index[c]).collect();
    assert_eq!(positions, ints(&t["positions_deep"]));
    assert_eq!(hooks.trace.selections.len(), 2);
}

/// A selection handed attention rows of the wrong shape fails at that layer with the policy's
/// typed error, and the layer after which it would have pruned does not quietly keep everything.
#[test]
fn attention_rows_of_the_wrong_shape_are_an_error_not_a_skip() {
    let (a, b) = (load("small"), load("batch_b"));
    let layout = batch_layout(&[&a, &b]);
    let device = Default::default();
    let policies = [
        (CompressionPolicy::FastV(FastVConfig { layer: 2, keep_ratio: 0.45, rule: FastVRule::LastToken }), 1),
        (CompressionPolicy::Himap(HimapConfig { shallow_layer: 1, shallow_keep_ratio: 0.5, deep_layer: 3, deep_keep_ratio: 0.25 }), 0),
        (CompressionPolicy::Act(ActConfig { coverage: 1.0, keep_ratios: vec![0.5], selection: ActSelection::Attention }), 0),
    ];
    for (policy, scoring) in policies {
        let mut hooks = policy.hooks(4).unwrap();
        let hooks: &mut dyn LayerHooks<B> = &mut hooks;
        for layer in 0..scoring {
            assert!(hooks_idle(hooks, layer, &layout), "{policy:?}");
        }
        let rows = hooks.before_layer(scoring, &layout).unwrap().rows.expect("asks for rows");
        // One sample's rows instead of two, over one key too few.
        let probs = Tensor::<B, 3>::zeros([1, 1, layout.padded_len - 1], &device);
        let err = hooks.attention_rows(scoring, &layout, AttentionRows { probs, rows }).unwrap_err();
        assert_eq!((err.layer, err.sample), (scoring, None), "{policy:?}");
        let source = err.source.downcast_ref::<CompressError>();
        assert!(matches!(source, Some(CompressError::RowsShape { .. })), "{policy:?}: {err}");
        // Carrying on regardless is refused too: no selection was made.
        let hidden = Tensor::<B, 3>::zeros([2, layout.padded_len, 4], &device);
        let next = match hooks.after_layer(scoring, &layout, &hidden) {
            Ok(None) => hooks.before_layer(scoring + 1, &layout).map(|_| ()),
            other => other.map(|_| ()),
        };
        let err = next.expect_err("no silent fallback after a failed selection");
        let source = err.source.downcast_ref::<CompressError>();
        assert!(matches!(source, Some(CompressError::MissingRows { asked_at }) if *asked_at == scoring), "{policy:?}: {err}");
    }
}
