//! Each policy on a tiny Llama, batched with right padding and a different image span per sample:
//! keep-all equals no compression exactly (forward and greedy generation); the in-place
//! implementation (dropped positions, gathered keys/values) equals a masked-attention reference
//! that keeps every position and hides the same keys; forward+backward reaches the image
//! embeddings; greedy generation runs on the pruned/restricted KV cache. ACT-IN-LLM's AvgPool-1D
//! equals the seam's pooling asked for by hand with `adaptive_avg_pool1d`'s windows, and its cached
//! greedy decoding equals recomputing the grown sequence. A policy whose selection fails ends the
//! forward and the prefill with its error; a sample without tokens does not stop the others'
//! compression.

use anchorage_compress::{
    ActConfig, ActSelection, CompressionPolicy, Compressor, FastVConfig, FastVRule, FlopsReport, FlopsShape, HimapConfig,
    Trace,
};
use anchorage_llm::{
    AttentionRows, AttnPlan, CacheMode, GenerateOptions, HookError, KeyMask, KvAccess, KvCache, LayerHooks, LayerRequest,
    LlamaConfig, Llm, LlmError, LlmInput, NoHooks, SeqLayout,
};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

type B = burn::backend::Flex;
type AD = burn::backend::Autodiff<burn::backend::Flex>;

const LAYERS: usize = 5;
const LEN: usize = 18;
const LENGTHS: [usize; 2] = [18, 15];
const SPANS: [std::ops::Range<usize>; 2] = [3..13, 2..10];

fn config() -> LlamaConfig {
    LlamaConfig {
        num_hidden_layers: LAYERS,
        ..LlamaConfig::tiny()
    }
}

fn setup<Bk: Backend>() -> (Llm<Bk>, Tensor<Bk, 3>) {
    let device = Default::default();
    Bk::seed(&device, 11);
    let llm = config().init::<Bk>(&device);
    let embeds = Tensor::<Bk, 3>::random([2, LEN, 64], Distribution::Normal(0.0, 1.0), &device);
    (llm, embeds)
}

fn input<Bk: Backend>(embeds: &Tensor<Bk, 3>) -> LlmInput<Bk> {
    LlmInput::padded(embeds.clone(), &LENGTHS, SPANS.to_vec())
}

fn values<Bk: Backend>(t: Tensor<Bk, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn act(ratios: Vec<f64>, selection: ActSelection) -> CompressionPolicy {
    CompressionPolicy::Act(ActConfig { coverage: 0.8, keep_ratios: ratios, selection })
}

fn is_avg_pool(policy: &CompressionPolicy) -> bool {
    matches!(policy, CompressionPolicy::Act(ActConfig { selection: ActSelection::AvgPool, .. }))
}

fn fastv(ratio: f64, rule: FastVRule) -> CompressionPolicy {
    CompressionPolicy::FastV(FastVConfig { layer: 2, keep_ratio: ratio, rule })
}

fn himap(r1: f64, r2: f64) -> CompressionPolicy {
    CompressionPolicy::Himap(HimapConfig { shallow_layer: 1, shallow_keep_ratio: r1, deep_layer: 3, deep_keep_ratio: r2 })
}

/// Every policy with real compression.
fn compressing() -> Vec<CompressionPolicy> {
    vec![
        act(vec![0.6, 0.3], ActSelection::Attention),
        act(vec![0.5, 0.25], ActSelection::UniformWindows),
        act(vec![0.5, 0.3], ActSelection::AvgPool),
        fastv(0.5, FastVRule::LastToken),
        fastv(0.4, FastVRule::AverageReceived),
        himap(0.5, 0.25),
    ]
}

/// Every policy set to keep everything.
fn keep_all() -> Vec<CompressionPolicy> {
    vec![
        act(vec![1.0, 1.0], ActSelection::Attention),
        act(vec![1.0], ActSelection::UniformWindows),
        act(vec![1.0, 1.0], ActSelection::AvgPool),
        fastv(1.0, FastVRule::LastToken),
        fastv(1.0, FastVRule::AverageReceived),
        himap(1.0, 1.0),
    ]
}

fn run(llm: &Llm<B>, embeds: &Tensor<B, 3>, policy: &CompressionPolicy) -> (anchorage_llm::LlmOutput<B>, Compressor) {
    let mut hooks = policy.hooks(LAYERS).unwrap();
    let out = llm.forward_embeds(input(embeds), &mut hooks).unwrap();
    (out, hooks)
}

#[test]
fn keep_all_equals_no_compression_up_to_rounding() {
    let (llm, embeds) = setup::<B>();
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    let options = GenerateOptions { max_new_tokens: 4, stop_tokens: vec![] };
    let mut cache = KvCache::new(LAYERS);
    let plain_tokens = llm.generate(input(&embeds), &mut NoHooks, &mut cache, &options).unwrap();
    for policy in keep_all() {
        let (out, hooks) = run(&llm, &embeds, &policy);
        // The uncompressed forward runs the fused CPU attention (anchorage_kernels::attention);
        // a policy's layers with a restriction, pooling or rows run the tensor-op attention, so
        // the two agree up to f32 rounding, not bit for bit. The tokens below stay exact.
        let worst = values(out.hidden).iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "{policy:?}: hidden states differ by {worst}");
        assert!(!hooks.trace().unwrap().selections.is_empty(), "{policy:?} did select");
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let mut cache = KvCache::new(LAYERS);
        let tokens = llm.generate(input(&embeds), &mut hooks, &mut cache, &options).unwrap();
        assert_eq!(tokens, plain_tokens, "{policy:?}");
    }
}

/// The layer loop by hand with every position kept, hiding per layer the keys `hidden(layer, b)`
/// lists (original indices), causal and padding masks as usual.
fn masked_reference(llm: &Llm<B>, embeds: &Tensor<B, 3>, hidden: impl Fn(usize, usize) -> Vec<usize>) -> Vec<f32> {
    let device = Default::default();
    let positions: Vec<i64> = (0..2).flat_map(|_| 0..LEN as i64).collect();
    let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [2, LEN]), &device);
    let (cos, sin) = llm.rope.cos_sin(positions, embeds.dtype());
    let mut x = embeds.clone();
    for (layer, block) in llm.model.layers.iter().enumerate() {
        let mut mask = Vec::with_capacity(2 * LEN * LEN);
        for (b, &n) in LENGTHS.iter().enumerate() {
            let hide = hidden(layer, b);
            for q in 0..LEN {
                for k in 0..LEN {
                    mask.push(k > q || k >= n || hide.contains(&k));
                }
            }
        }
        let mut plan = AttnPlan::causal();
        plan.mask = KeyMask::Explicit(Tensor::from_data(TensorData::new(mask, [2, LEN, LEN]), &device));
        x = block.forward(x, &cos, &sin, &plan, CacheMode::None).0;
    }
    values(llm.model.norm.forward(x))
}

/// Image tokens of sample `b` not in `kept` (original indices).
fn dropped(b: usize, kept: &[usize]) -> Vec<usize> {
    SPANS[b].clone().filter(|p| !kept.contains(p)).collect()
}

/// Keys each layer hides under a policy, from the trace of its run.
fn hidden_keys(policy: &CompressionPolicy, trace: &Trace, layer: usize, b: usize) -> Vec<usize> {
    match policy {
        CompressionPolicy::Act(c) => {
            let stages = anchorage_compress::act_stages(c, LAYERS);
            match stages.iter().position(|s| s.layers.contains(&layer)) {
                Some(s) => dropped(b, &trace.selections[s].kept_images[b]),
                None => Vec::new(),
            }
        }
        // Pruning after layer `sel.layer` hides the dropped tokens from every later layer, and
        // later selections only drop more.
        _ => trace
            .selections
            .iter()
            .filter(|sel| layer > sel.layer)
            .flat_map(|sel| dropped(b, &sel.kept_images[b]))
            .collect(),
    }
}

#[test]
fn in_place_equals_masked_attention_reference() {
    let (llm, embeds) = setup::<B>();
    // AvgPool builds new keys/values: `avg_pool_equals_the_seam_with_adaptive_windows` checks it.
    for policy in compressing().into_iter().filter(|p| !is_avg_pool(p)) {
        let (out, hooks) = run(&llm, &embeds, &policy);
        let trace = hooks.trace().unwrap().clone();
        let expected_selections = match &policy {
            CompressionPolicy::Act(c) => anchorage_compress::act_stages(c, LAYERS).len(),
            CompressionPolicy::Himap(_) => 2,
            _ => 1,
        };
        assert_eq!(trace.selections.len(), expected_selections, "{policy:?}");
        // Something was compressed: fewer keys than queries (ACT) or fewer queries later on.
        let (first, last) = (trace.layers[0][0], trace.layers[LAYERS - 1][0]);
        assert!(last.keys < first.keys, "{policy:?}: {:?}", trace.layers);
        if matches!(policy, CompressionPolicy::Act(_)) {
            assert_eq!(last.queries, first.queries, "ACT keeps every query");
        }
        let reference = masked_reference(&llm, &embeds, |layer, b| hidden_keys(&policy, &trace, layer, b));
        let ours = values(out.hidden.clone());
        let width = 64;
        let new_len = out.layout.padded_len;
        let mut max = 0f32;
        for (b, sample) in out.layout.samples.iter().enumerate() {
            // Pruned samples keep the text and exactly the selected image tokens.
            let kept_images: Vec<usize> = sample.index.iter().copied().filter(|i| SPANS[b].contains(i)).collect();
            if !matches!(policy, CompressionPolicy::Act(_)) {
                assert_eq!(&kept_images, trace.selections.last().unwrap().kept_images.get(b).unwrap(), "{policy:?}");
                assert!(kept_images.len() < SPANS[b].len(), "{policy:?} dropped something");
            }
            for (c, &orig) in sample.index.iter().enumerate() {
                for w in 0..width {
                    let d = (ours[(b * new_len + c) * width + w] - reference[(b * LEN + orig) * width + w]).abs();
                    max = max.max(d);
                }
            }
        }
        assert!(max < 1e-5, "{policy:?}: max diff {max}");
    }
}

#[test]
fn forward_backward_reaches_the_image_embeddings() {
    let (llm, embeds) = setup::<AD>();
    for policy in compressing() {
        let embeds = embeds.clone().detach().require_grad();
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let out = llm.forward_embeds(input(&embeds), &mut hooks).unwrap();
        let loss = llm.logits(out.hidden).sum();
        let grads = loss.backward();
        let grad = values(embeds.grad(&grads).expect("embeds get a gradient"));
        assert!(grad.iter().all(|g| g.is_finite()), "{policy:?}");
        for (b, span) in SPANS.iter().enumerate() {
            for p in span.clone() {
                let row = &grad[(b * LEN + p) * 64..(b * LEN + p + 1) * 64];
                assert!(row.iter().any(|&g| g != 0.0), "{policy:?}: no gradient at sample {b} image token {p}");
            }
        }
    }
}

#[test]
fn greedy_generation_runs_on_the_compressed_cache() {
    let (llm, embeds) = setup::<B>();
    let options = GenerateOptions { max_new_tokens: 4, stop_tokens: vec![] };
    for policy in compressing() {
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let mut cache = KvCache::new(LAYERS);
        let tokens = llm.generate(input(&embeds), &mut hooks, &mut cache, &options).unwrap();
        assert!(tokens.iter().all(|t| t.len() == 4), "{policy:?}: {tokens:?}");
        let lengths = cache.lengths();
        // Each decode step appended 3 keys to every layer; compressed layers hold fewer slots.
        let first = lengths[0];
        assert_eq!(first, LEN + 3, "{policy:?}: {lengths:?}");
        assert!(lengths[LAYERS - 1] < first, "{policy:?}: {lengths:?}");
        // The first generated token is the compressed forward's greedy choice.
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let out = llm.forward_embeds(input(&embeds), &mut hooks).unwrap();
        let logits = llm.logits(out.hidden);
        let vocab = logits.dims()[2];
        let logits = values(logits);
        for (b, sample) in out.layout.samples.iter().enumerate() {
            let row = &logits[(b * out.layout.padded_len + sample.last()) * vocab..][..vocab];
            let best = (0..vocab).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
            assert_eq!(tokens[b][0] as usize, best, "{policy:?} sample {b}");
        }
    }
}

#[test]
fn schedule_predicts_what_each_policy_did() {
    let (llm, embeds) = setup::<B>();
    for policy in compressing().into_iter().chain(keep_all()) {
        let (_, hooks) = run(&llm, &embeds, &policy);
        let trace = hooks.trace().unwrap();
        for (b, (&n, span)) in LENGTHS.iter().zip(&SPANS).enumerate() {
            let expected = policy.schedule(LAYERS, n, span.len()).unwrap();
            let ran: Vec<_> = trace.layers.iter().map(|l| l[b]).collect();
            assert_eq!(ran, expected, "{policy:?} sample {b}");
        }
    }
}

#[test]
fn trace_gives_the_flops_of_each_sample() {
    let (llm, embeds) = setup::<B>();
    let shape = FlopsShape { hidden: 64, intermediate: 172 };
    let (_, hooks) = run(&llm, &embeds, &fastv(0.5, FastVRule::LastToken));
    let trace = hooks.trace().unwrap();
    for (b, (&n, span)) in LENGTHS.iter().zip(&SPANS).enumerate() {
        let report = FlopsReport::from_trace(shape, trace, b);
        let policy = fastv(0.5, FastVRule::LastToken);
        assert_eq!(policy.schedule(LAYERS, n, span.len()).unwrap(), trace.layers.iter().map(|l| l[b]).collect::<Vec<_>>());
        let kept = n - span.len() + anchorage_compress::keep_count(0.5, span.len());
        let expected = 2.0 * shape.full_layer(n) + 3.0 * shape.full_layer(kept);
        assert!((report.total_compressed() - expected).abs() < 1.0, "sample {b}");
        assert_eq!(report.total_full(), 5.0 * shape.full_layer(n));
    }
}

#[test]
fn a_sample_without_image_runs_as_if_uncompressed() {
    let (llm, embeds) = setup::<B>();
    let spans = vec![SPANS[0].clone(), 0..0];
    let make = || LlmInput::padded(embeds.clone(), &LENGTHS, spans.clone());
    let plain = values(llm.forward_embeds(make(), &mut NoHooks).unwrap().hidden);
    for policy in compressing() {
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let out = llm.forward_embeds(make(), &mut hooks).unwrap();
        let sample = &out.layout.samples[1];
        assert_eq!(sample.index, (0..LENGTHS[1]).collect::<Vec<_>>(), "{policy:?}");
        assert!(out.layout.samples[0].len() <= LENGTHS[0]);
        let new_len = out.layout.padded_len;
        let ours = values(out.hidden);
        let mut max = 0f32;
        for c in 0..LENGTHS[1] {
            for w in 0..64 {
                max = max.max((ours[(new_len + c) * 64 + w] - plain[(LEN + c) * 64 + w]).abs());
            }
        }
        assert!(max < 1e-5, "{policy:?}: max diff {max}");
    }
}

#[test]
fn hooks_are_reusable_across_forwards() {
    let (llm, embeds) = setup::<B>();
    for policy in compressing() {
        let (first, fresh) = run(&llm, &embeds, &policy);
        let mut hooks = fresh.clone();
        let again = llm.forward_embeds(input(&embeds), &mut hooks).unwrap();
        assert_eq!(values(again.hidden), values(first.hidden), "{policy:?}");
        assert_eq!(hooks.trace(), fresh.trace(), "{policy:?}");
    }
}

/// ACT-IN-LLM's AvgPool-1D as the seam request a test writes by hand: on each stage's layers,
/// text positions alone and the image tokens in `adaptive_avg_pool1d`'s windows
/// (`[floor(i·n/k), ceil((i+1)·n/k))`, `k = round(ratio · n)`).
struct HandPooled {
    stages: Vec<(std::ops::Range<usize>, f64)>,
}
impl LayerHooks<B> for HandPooled {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        let Some((_, ratio)) = self.stages.iter().find(|(l, _)| l.contains(&layer)) else {
            return Ok(LayerRequest::default());
        };
        let pool = layout
            .samples
            .iter()
            .map(|s| {
                let (start, n) = (s.image.start, s.image.len());
                let k = anchorage_compress::keep_count(*ratio, n);
                let mut groups: Vec<Vec<usize>> = (0..start).map(|c| vec![c]).collect();
                groups.extend((0..k).map(|i| (start + i * n / k..start + ((i + 1) * n).div_ceil(k)).collect()));
                groups.extend((s.image.end..s.len()).map(|c| vec![c]));
                groups
            })
            .collect();
        Ok(LayerRequest { kv: KvAccess::Pool(pool), ..Default::default() })
    }
}

#[test]
fn avg_pool_equals_the_seam_with_adaptive_windows() {
    let (llm, embeds) = setup::<B>();
    let policy = act(vec![0.5, 0.3], ActSelection::AvgPool);
    let (out, hooks) = run(&llm, &embeds, &policy);
    let CompressionPolicy::Act(config) = &policy else { unreachable!() };
    let stages: Vec<_> = anchorage_compress::act_stages(config, LAYERS).into_iter().map(|s| (s.layers, s.keep_ratio)).collect();
    assert_eq!(stages, vec![(1..3, 0.5), (3..5, 0.3)]);
    let by_hand = llm.forward_embeds(input(&embeds), &mut HandPooled { stages }).unwrap();
    assert_eq!(values(out.hidden.clone()), values(by_hand.hidden));
    // keys per layer: all, then text + round(0.5 n), then text + round(0.3 n) (n = 10 and 8)
    let trace = hooks.trace().unwrap();
    let keys: Vec<Vec<usize>> = trace.layers.iter().map(|l| l.iter().map(|t| t.keys).collect()).collect();
    assert_eq!(keys, vec![vec![18, 15], vec![13, 11], vec![13, 11], vec![11, 9], vec![11, 9]]);
    // every image token feeds some pooled key
    assert_eq!(trace.selections[0].kept_images, vec![SPANS[0].clone().collect::<Vec<_>>(), SPANS[1].clone().collect()]);
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    assert!(values(out.hidden).iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3), "pooling changes the output");
}

/// Greedy decoding on the AvgPool KV cache: each step's logits equal a from-scratch forward of the
/// grown sequence under the same policy (no cache), one sample at a time; tokens are identical.
#[test]
fn avg_pool_generation_with_cache_equals_recomputation() {
    let (llm, embeds) = setup::<B>();
    let device = Default::default();
    let policy = act(vec![0.5, 0.3], ActSelection::AvgPool);
    let steps = 5;
    let options = GenerateOptions { max_new_tokens: steps, stop_tokens: vec![] };
    let mut hooks = policy.hooks(LAYERS).unwrap();
    let generated = llm.generate(input(&embeds), &mut hooks, &mut KvCache::new(LAYERS), &options).unwrap();

    let recompute = |grown: &Tensor<B, 3>, b: usize| {
        let len = grown.dims()[1];
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let out = llm.forward_embeds(LlmInput::padded(grown.clone(), &[len], vec![SPANS[b].clone()]), &mut hooks).unwrap();
        values(llm.logits(out.hidden.slice([0..1, len - 1..len, 0..64])))
    };
    let argmax = |row: &[f32]| (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap() as u32;
    let mut cache = KvCache::new(LAYERS);
    let first = GenerateOptions { max_new_tokens: 1, stop_tokens: vec![] };
    let mut next: Vec<u32> = llm.generate(input(&embeds), &mut policy.hooks(LAYERS).unwrap(), &mut cache, &first).unwrap().concat();
    assert_eq!(cache.lengths(), vec![LEN, 13, 13, 11, 11], "text 8 + 5 windows, then + 3");
    let mut grown: Vec<Tensor<B, 3>> = (0..2).map(|b| embeds.clone().slice([b..b + 1, 0..LENGTHS[b], 0..64])).collect();
    let mut tokens = vec![Vec::new(); 2];
    for step in 0..steps {
        for b in 0..2 {
            assert_eq!(argmax(&recompute(&grown[b], b)), next[b], "sample {b} step {step}");
            tokens[b].push(next[b]);
            let id = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![next[b] as i64], [1, 1]), &device);
            grown[b] = Tensor::cat(vec![grown[b].clone(), llm.embed(id)], 1);
        }
        if step + 1 == steps {
            break;
        }
        let logits = values(llm.decode_step(&next, &mut cache, &device).unwrap());
        let vocab = logits.len() / 2;
        for b in 0..2 {
            let cached = &logits[b * vocab..(b + 1) * vocab];
            let theirs = recompute(&grown[b], b);
            let d = cached.iter().zip(&theirs).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(d <= 1e-4, "sample {b} step {step}: cached vs recomputed logits differ by {d}");
            next[b] = argmax(cached);
        }
    }
    assert_eq!(generated, tokens);
}

/// A real policy whose attention rows arrive cut short (one key too few), as a broken seam would
/// hand them: the policy's own check must fail the forward.
struct CutRows(Compressor);
impl LayerHooks<B> for CutRows {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        LayerHooks::<B>::before_layer(&mut self.0, layer, layout)
    }
    fn attention_rows(&mut self, layer: usize, layout: &SeqLayout, rows: AttentionRows<B>) -> Result<(), HookError> {
        let [b, r, l] = rows.probs.dims();
        let probs = rows.probs.slice([0..b, 0..r, 0..l - 1]);
        self.0.attention_rows(layer, layout, AttentionRows { probs, rows: rows.rows })
    }
    fn after_layer(&mut self, layer: usize, layout: &SeqLayout, hidden: &Tensor<B, 3>) -> Result<Option<Vec<Vec<usize>>>, HookError> {
        self.0.after_layer(layer, layout, hidden)
    }
}

#[test]
fn a_failing_selection_is_an_error_of_the_forward_and_the_prefill() {
    let (llm, embeds) = setup::<B>();
    let options = GenerateOptions { max_new_tokens: 2, stop_tokens: vec![] };
    // Attention-scored policies and the layer whose rows score them.
    let cases = [
        (act(vec![0.6, 0.3], ActSelection::Attention), 0),
        (fastv(0.5, FastVRule::LastToken), 1),
        (fastv(0.4, FastVRule::AverageReceived), 1),
        (himap(0.5, 0.25), 0),
    ];
    for (policy, layer) in cases {
        let check = |err: LlmError| {
            let LlmError::Hook(hook) = &err else { panic!("{policy:?}: not a hook error: {err}") };
            assert_eq!(hook.layer, layer, "{policy:?}");
            let source = hook.source.downcast_ref::<anchorage_compress::CompressError>();
            assert!(matches!(source, Some(anchorage_compress::CompressError::RowsShape { .. })), "{policy:?}: {err}");
            assert!(err.to_string().contains(&format!("layer {layer}")), "{err}");
        };
        let mut hooks = CutRows(policy.hooks(LAYERS).unwrap());
        check(llm.forward_embeds(input(&embeds), &mut hooks).err().expect("no uncompressed output"));
        let mut hooks = CutRows(policy.hooks(LAYERS).unwrap());
        let mut cache = KvCache::new(LAYERS);
        check(llm.generate(input(&embeds), &mut hooks, &mut cache, &options).err().expect("no tokens"));
    }
}

#[test]
fn a_sample_without_tokens_does_not_stop_the_others_compression() {
    let (llm, embeds) = setup::<B>();
    let lengths = [LENGTHS[0], 0];
    let spans = vec![SPANS[0].clone(), 0..0];
    let alone = embeds.clone().slice([0..1, 0..LEN, 0..64]);
    for policy in compressing() {
        let mut hooks = policy.hooks(LAYERS).unwrap();
        let out = llm.forward_embeds(LlmInput::padded(embeds.clone(), &lengths, spans.clone()), &mut hooks).unwrap();
        assert!(out.layout.samples[1].is_empty(), "{policy:?}");
        let mut single = policy.hooks(LAYERS).unwrap();
        let one = llm.forward_embeds(LlmInput::padded(alone.clone(), &lengths[..1], spans[..1].to_vec()), &mut single).unwrap();
        assert_eq!(out.layout.samples[0], one.layout.samples[0], "{policy:?}");
        let selections = &hooks.trace().unwrap().selections;
        assert!(!selections.is_empty(), "{policy:?} selected");
        assert_eq!(selections[0].kept_images[0], single.trace().unwrap().selections[0].kept_images[0], "{policy:?}");
        let n = one.layout.padded_len;
        assert_eq!(out.layout.padded_len, n, "{policy:?}: the empty sample adds no padding");
        let ours = values(out.hidden.slice([0..1, 0..n, 0..64]));
        let theirs = values(one.hidden);
        let d = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(d < 1e-5, "{policy:?}: max diff {d}");
    }
}
