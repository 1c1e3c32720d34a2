//! The compression seam: the no-op hook is the plain forward exactly; restricting keys/values
//! through a hook equals the same computation with an explicit attention mask; dropping positions
//! equals masking them out of the later layers; attention rows are proper distributions; all of it
//! batched with right padding and a different kept set per sample.

use anchorage_llm::{
    AttentionRows, AttnPlan, BadRequest, CacheMode, GenerateOptions, HiddenRecorder, HookError, KeyMask, KvAccess, KvCache,
    LayerHooks, LayerRequest, LlamaConfig, LlmError, Llm, LlmInput, NoHooks, SeqLayout,
};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

type B = burn::backend::Flex;

const LEN: usize = 14;
const LENGTHS: [usize; 2] = [14, 11];

fn model() -> (Llm<B>, Tensor<B, 3>, Device<B>) {
    let device = Default::default();
    B::seed(&device, 3);
    let config = LlamaConfig {
        num_hidden_layers: 3,
        ..LlamaConfig::tiny()
    };
    let llm = config.init::<B>(&device);
    let embeds = Tensor::<B, 3>::random([2, LEN, 64], Distribution::Normal(0.0, 1.0), &device);
    (llm, embeds, device)
}

fn input(embeds: &Tensor<B, 3>) -> LlmInput<B> {
    LlmInput::padded(embeds.clone(), &LENGTHS, vec![3..9, 2..8])
}

fn values(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Runs the layers by hand with one explicit `[batch, len, len]` mask per layer (true = masked).
fn reference(llm: &Llm<B>, embeds: &Tensor<B, 3>, masks: &[Vec<bool>], device: &Device<B>) -> Tensor<B, 3> {
    let positions: Vec<i64> = (0..2).flat_map(|_| 0..LEN as i64).collect();
    let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [2, LEN]), device);
    let (cos, sin) = llm.rope.cos_sin(positions, embeds.dtype());
    let mut hidden = embeds.clone();
    for (layer, mask) in llm.model.layers.iter().zip(masks) {
        let mut plan = AttnPlan::causal();
        plan.mask = KeyMask::Explicit(Tensor::from_data(TensorData::new(mask.clone(), [2, LEN, LEN]), device));
        hidden = layer.forward(hidden, &cos, &sin, &plan, CacheMode::None).0;
    }
    llm.model.norm.forward(hidden)
}

/// Causal + padding mask, additionally hiding the keys `hidden(b, k)` says.
fn mask_with(hidden: impl Fn(usize, usize) -> bool) -> Vec<bool> {
    let mut m = Vec::new();
    for (b, &n) in LENGTHS.iter().enumerate() {
        for q in 0..LEN {
            for k in 0..LEN {
                m.push(k > q || k >= n || hidden(b, k));
            }
        }
    }
    m
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(d <= tol, "{what}: max diff {d}");
}

/// Active but asks for nothing.
struct Idle;
impl LayerHooks<B> for Idle {}

#[test]
fn no_op_hooks_equal_plain_forward_exactly() {
    let (llm, embeds, _) = model();
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    let idle = values(llm.forward_embeds(input(&embeds), &mut Idle).unwrap().hidden);
    let recorded = values(llm.forward_embeds(input(&embeds), &mut HiddenRecorder::default()).unwrap().hidden);
    assert_eq!(plain, idle);
    assert_eq!(plain, recorded);
}

/// ACT-IN-LLM-like: at layer 1 keep all text keys and a per-sample subset of image keys.
struct RestrictKv {
    layer: usize,
    keep_image: [Vec<usize>; 2],
}
impl LayerHooks<B> for RestrictKv {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        if layer != self.layer {
            return Ok(LayerRequest::default());
        }
        let keep = layout
            .samples
            .iter()
            .zip(&self.keep_image)
            .map(|(s, img)| {
                let mut k: Vec<usize> = s.text_positions();
                k.extend(img);
                k.sort();
                k
            })
            .collect();
        Ok(LayerRequest {
            rows: None,
            kv: KvAccess::Keep(keep),
        })
    }
}

#[test]
fn kv_restriction_equals_explicit_mask() {
    let (llm, embeds, device) = model();
    let keep_image = [vec![4, 7], vec![2, 3, 5]];
    let mut hook = RestrictKv {
        layer: 1,
        keep_image: keep_image.clone(),
    };
    let ours = llm.forward_embeds(input(&embeds), &mut hook).unwrap().hidden;
    let spans = [3..9, 2..8];
    let plain = mask_with(|_, _| false);
    let restricted = mask_with(|b, k| spans[b].contains(&k) && !keep_image[b].contains(&k));
    let theirs = reference(&llm, &embeds, &[plain.clone(), restricted, plain], &device);
    let (ours, theirs) = (values(ours), values(theirs));
    // compare real positions only
    for (b, &n) in LENGTHS.iter().enumerate() {
        let at = b * LEN * 64;
        assert_close(&ours[at..at + n * 64], &theirs[at..at + n * 64], 1e-5, "kv restriction");
    }
    // and the restriction does change the result
    let full = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    assert!(full.iter().zip(&ours).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// FastV-like: read the last row at layer 0, then drop all but the top-2 image tokens after it.
#[derive(Default)]
struct DropImage {
    scores: Option<Vec<Vec<f32>>>,
    kept_original: Vec<Vec<usize>>,
}
impl LayerHooks<B> for DropImage {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        Ok(LayerRequest {
            rows: (layer == 0).then(|| layout.last_rows()),
            kv: KvAccess::All,
        })
    }
    fn attention_rows(&mut self, _layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        let [b, r, l] = rows.probs.dims();
        assert_eq!([b, r, l], [2, 1, layout.padded_len]);
        let p = rows.probs.into_data().to_vec::<f32>().unwrap();
        self.scores = Some(p.chunks(l).map(|c| c.to_vec()).collect());
        Ok(())
    }
    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, _h: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        if layer != 0 {
            return Ok(None);
        }
        let Some(scores) = self.scores.as_ref() else {
            return Ok(None);
        };
        let keep: Vec<Vec<usize>> = layout
            .samples
            .iter()
            .zip(scores)
            .map(|(s, row)| {
                let mut img = s.image_positions();
                img.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
                let mut k = s.text_positions();
                k.extend(&img[..2]);
                k.sort();
                k
            })
            .collect();
        self.kept_original = keep
            .iter()
            .zip(&layout.samples)
            .map(|(k, s)| k.iter().map(|&c| s.index[c]).collect())
            .collect();
        Ok(Some(keep))
    }
}

#[test]
fn attention_rows_are_distributions_over_visible_keys() {
    let (llm, embeds, _) = model();
    let mut hook = DropImage::default();
    llm.forward_embeds(input(&embeds), &mut hook).unwrap();
    let scores = hook.scores.unwrap();
    for (b, row) in scores.iter().enumerate() {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "sample {b} sums to {sum}");
        assert!(row[LENGTHS[b]..].iter().all(|&p| p == 0.0), "padding keys get no attention");
        assert!(row[..LENGTHS[b]].iter().all(|&p| p > 0.0));
    }
}

#[test]
fn dropping_positions_equals_masking_them_in_later_layers() {
    let (llm, embeds, device) = model();
    let mut hook = DropImage::default();
    let out = llm.forward_embeds(input(&embeds), &mut hook).unwrap();
    let kept = hook.kept_original.clone();
    // text (6 + 3 after the image in sample 0; 2 + 3 in sample 1) + 2 image tokens each
    assert_eq!(kept[0].len(), LENGTHS[0] - 6 + 2);
    assert_eq!(kept[1].len(), LENGTHS[1] - 6 + 2);
    assert_eq!(out.layout.samples[0].index, kept[0]);
    let new_len = out.hidden.dims()[1];
    assert_eq!(new_len, kept[0].len().max(kept[1].len()));
    let positions = out.position_ids.clone().into_data().convert::<i64>().to_vec::<i64>().unwrap();
    assert_eq!(positions[..kept[0].len()], kept[0].iter().map(|&i| i as i64).collect::<Vec<_>>()[..]);

    let plain = mask_with(|_, _| false);
    let dropped = mask_with(|b, k| !kept[b].contains(&k));
    let theirs = values(reference(&llm, &embeds, &[plain, dropped.clone(), dropped], &device));
    let ours = values(out.hidden);
    for b in 0..2 {
        for (j, &orig) in kept[b].iter().enumerate() {
            let a = &ours[(b * new_len + j) * 64..(b * new_len + j + 1) * 64];
            let t = &theirs[(b * LEN + orig) * 64..(b * LEN + orig + 1) * 64];
            assert_close(a, t, 1e-5, &format!("sample {b} kept position {orig}"));
        }
    }
}

#[test]
fn generation_after_pruning_uses_the_pruned_cache_and_keep_all_matches() {
    let (llm, embeds, _) = model();
    let options = GenerateOptions {
        max_new_tokens: 4,
        stop_tokens: vec![],
    };
    let mut plain_cache = KvCache::new(3);
    let plain = llm.generate(input(&embeds), &mut NoHooks, &mut plain_cache, &options).unwrap();
    let mut idle_cache = KvCache::new(3);
    let idle = llm.generate(input(&embeds), &mut Idle, &mut idle_cache, &options).unwrap();
    assert_eq!(plain, idle);
    assert_eq!(plain_cache.lengths(), vec![LEN + 3; 3]);

    let mut cache = KvCache::new(3);
    let pruned = llm.generate(input(&embeds), &mut DropImage::default(), &mut cache, &options).unwrap();
    assert_eq!(pruned.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4]);
    // layer 0 saw the whole sequence, layers 1 and 2 only the kept 10 positions (+3 decoded)
    assert_eq!(cache.lengths(), vec![LEN + 3, 10 + 3, 10 + 3]);
    // next positions continue from the original lengths, not the pruned ones
    assert_eq!(cache.next_position, vec![LENGTHS[0] as i64 + 3, LENGTHS[1] as i64 + 3]);
}

#[test]
fn padded_batch_generation_equals_one_sample_at_a_time() {
    let (llm, embeds, device) = model();
    let options = GenerateOptions {
        max_new_tokens: 5,
        stop_tokens: vec![],
    };
    let batched = llm.generate(input(&embeds), &mut NoHooks, &mut KvCache::new(3), &options).unwrap();
    for (b, &n) in LENGTHS.iter().enumerate() {
        let one = embeds.clone().slice([b..b + 1, 0..n, 0..64]);
        let single = llm
            .generate(LlmInput::plain(one), &mut NoHooks, &mut KvCache::new(3), &options)
            .unwrap();
        assert_eq!(batched[b], single[0], "sample {b}");
    }
    let _ = device;
}

#[test]
fn bad_hook_output_is_an_error_naming_layer_and_sample() {
    struct Bad;
    impl LayerHooks<B> for Bad {
        fn after_layer(&mut self, layer: usize, _l: &SeqLayout, _h: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
            Ok((layer == 1).then(|| vec![vec![0, 1], vec![3, 2]]))
        }
    }
    let (llm, embeds, _) = model();
    let err = llm.forward_embeds(input(&embeds), &mut Bad).unwrap_err();
    let LlmError::Hook(hook) = &err else { panic!("not a hook error: {err}") };
    assert_eq!((hook.layer, hook.sample), (1, Some(1)));
    assert!(hook.source.downcast_ref::<BadRequest>().is_some_and(|b| b.what == "after_layer keep"), "{err}");
    assert!(err.to_string().contains("layer 1, sample 1"), "{err}");
}

/// Training through a restricted layer: the gradient reaches the embeddings of kept image
/// tokens through their keys/values, and is exactly zero for dropped ones (1 layer, loss on the
/// last token only, so K/V are the only path between positions).
#[test]
fn gradients_flow_through_kept_keys_only() {
    type A = burn::backend::Autodiff<B>;
    let device = Default::default();
    A::seed(&device, 5);
    let config = LlamaConfig {
        num_hidden_layers: 1,
        ..LlamaConfig::tiny()
    };
    let llm = config.init::<A>(&device);
    let embeds = Tensor::<A, 3>::random([1, 10, 64], Distribution::Normal(0.0, 1.0), &device).require_grad();
    struct Keep4;
    impl LayerHooks<A> for Keep4 {
        fn before_layer(&mut self, _layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
            let mut keep = layout.samples[0].text_positions();
            keep.push(4);
            keep.sort();
            Ok(LayerRequest {
                rows: None,
                kv: KvAccess::Keep(vec![keep]),
            })
        }
    }
    let input = LlmInput::padded(embeds.clone(), &[10], std::iter::once(3..8).collect());
    let out = llm.forward_embeds(input, &mut Keep4).unwrap();
    let loss = out.hidden.slice([0..1, 9..10, 0..64]).sum();
    let grads = loss.backward();
    let grad = embeds.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    let norm = |p: usize| grad[p * 64..(p + 1) * 64].iter().map(|g| g * g).sum::<f32>();
    assert!(norm(4) > 0.0, "kept image token gets gradient");
    assert!(norm(0) > 0.0 && norm(8) > 0.0, "text tokens get gradient");
    for dropped in [3, 5, 6, 7] {
        assert_eq!(norm(dropped), 0.0, "dropped image token {dropped}");
    }
}

/// Generation with a K/V-restricting hook (ACT-IN-LLM-like) equals re-running the full forward
/// with the same hook on the growing sequence: the cache keeps exactly the restricted keys and the
/// decoded tokens (text) stay visible.
#[test]
fn restricted_generation_equals_restricted_forward_on_the_grown_sequence() {
    let (llm, embeds, device) = model();
    let one = embeds.slice([0..1, 0..LEN, 0..64]);
    let keep_image = || RestrictKv {
        layer: 1,
        keep_image: [vec![4, 7], vec![]],
    };
    let options = GenerateOptions {
        max_new_tokens: 3,
        stop_tokens: vec![],
    };
    let input = |e: Tensor<B, 3>| {
        let n = e.dims()[1];
        LlmInput::padded(e, &[n], std::iter::once(3..9).collect())
    };
    let mut cache = KvCache::new(3);
    let generated = llm.generate(input(one.clone()), &mut keep_image(), &mut cache, &options).unwrap();
    // layer 1 stored only text + 2 image keys (14 - 6 + 2 = 10) plus the 2 decoded steps
    assert_eq!(cache.lengths(), vec![LEN + 2, 10 + 2, LEN + 2]);
    let mut grown = one;
    for &token in &generated[0] {
        let out = llm.forward_embeds(input(grown.clone()), &mut keep_image()).unwrap();
        let n = grown.dims()[1];
        let last = llm.logits(out.hidden.slice([0..1, n - 1..n, 0..64]));
        let argmax = last.argmax(2).into_data().convert::<i64>().to_vec::<i64>().unwrap()[0];
        assert_eq!(argmax as u32, token);
        let next = llm.embed(Tensor::<B, 2, Int>::from_data(TensorData::new(vec![token as i64], [1, 1]), &device));
        grown = Tensor::cat(vec![grown, next], 1);
    }
}

/// A policy's own typed error, as a compression crate has one.
#[derive(Debug, thiserror::Error)]
#[error("no image token left to score")]
struct NothingToScore;

/// Which hook method fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failing {
    Before,
    Rows,
    After,
}

/// Asks for the last rows at layer `at`, then fails there (for sample 1) in `failing`; records
/// the layers it was called for.
struct FailsAt {
    at: usize,
    failing: Failing,
    layers: Vec<usize>,
}
impl FailsAt {
    fn error(&self, layer: usize, here: Failing) -> Result<(), HookError> {
        if layer == self.at && here == self.failing {
            return Err(HookError::new(layer, NothingToScore).in_sample(1));
        }
        Ok(())
    }
}
impl LayerHooks<B> for FailsAt {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        self.layers.push(layer);
        self.error(layer, Failing::Before)?;
        Ok(LayerRequest {
            rows: (layer == self.at).then(|| layout.last_rows()),
            kv: KvAccess::All,
        })
    }
    fn attention_rows(&mut self, layer: usize, _layout: &SeqLayout, _rows: AttentionRows<B>) -> Result<(), HookError> {
        self.error(layer, Failing::Rows)
    }
    fn after_layer(&mut self, layer: usize, _l: &SeqLayout, _h: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        self.error(layer, Failing::After)?;
        Ok(None)
    }
}

/// The error is the hook's, at its layer and sample, with the policy's error as its source.
fn assert_hook_error(err: &LlmError, layer: usize) {
    let LlmError::Hook(hook) = err else { panic!("not a hook error: {err}") };
    assert_eq!((hook.layer, hook.sample), (layer, Some(1)), "{err}");
    assert!(hook.source.downcast_ref::<NothingToScore>().is_some(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("layer {layer}, sample 1")) && text.contains("no image token left"), "{text}");
}

#[test]
fn a_failing_hook_ends_the_forward_and_the_prefill_with_its_error() {
    let (llm, embeds, _) = model();
    let options = GenerateOptions {
        max_new_tokens: 3,
        stop_tokens: vec![],
    };
    for failing in [Failing::Before, Failing::Rows, Failing::After] {
        let mut hook = FailsAt { at: 1, failing, layers: Vec::new() };
        let err = llm.forward_embeds(input(&embeds), &mut hook).err().expect("no output when a hook fails");
        assert_hook_error(&err, 1);
        assert_eq!(hook.layers, vec![0, 1], "{failing:?}: no layer runs after the failure");

        let mut hook = FailsAt { at: 1, failing, layers: Vec::new() };
        let mut cache = KvCache::new(3);
        let err = llm.generate(input(&embeds), &mut hook, &mut cache, &options).err().expect("no tokens when the prefill fails");
        assert_hook_error(&err, 1);
        assert!(!cache.is_filled(), "{failing:?}: the failed prefill leaves no usable cache");
    }
}
