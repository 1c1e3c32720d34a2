//! Pooled keys/values ([`KvAccess::Pool`], ACT-IN-LLM's AvgPool-1D) and the projected-only-kept-rows
//! path of [`KvAccess::Keep`]: singleton groups change nothing; the pooled layer equals an
//! attention written out in the test (pooled keys/values built group by group, plain softmax with the
//! causal-by-last-member mask), in value and in gradient; greedy generation on the pooled KV cache
//! equals recomputing the whole sequence each step; projecting only the kept rows equals projecting
//! all and gathering.

use std::ops::Range;

use anchorage_llm::{
    apply_rope, AttnPlan, CacheMode, GenerateOptions, HookError, KeyMask, KvAccess, KvCache, LayerHooks, LayerRequest,
    LlamaConfig, Llm, LlmInput, NoHooks, SeqLayout,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, TensorData};

type B = burn::backend::Flex;
type AD = burn::backend::Autodiff<B>;

const LEN: usize = 14;
const LENGTHS: [usize; 2] = [14, 11];
const SPANS: [Range<usize>; 2] = [3..9, 2..8];
/// Windows per sample: 6 image tokens in 4 windows overlap ([0,2) [1,3) [3,5) [4,6)), in 3 do not.
const WINDOWS: [usize; 2] = [4, 3];

fn setup<Bk: Backend>(layers: usize, seed: u64) -> (Llm<Bk>, Tensor<Bk, 3>) {
    let device = Default::default();
    Bk::seed(&device, seed);
    let llm = LlamaConfig { num_hidden_layers: layers, ..LlamaConfig::tiny() }.init::<Bk>(&device);
    let embeds = Tensor::<Bk, 3>::random([2, LEN, 64], Distribution::Normal(0.0, 1.0), &device);
    (llm, embeds)
}

fn input<Bk: Backend>(embeds: &Tensor<Bk, 3>) -> LlmInput<Bk> {
    LlmInput::padded(embeds.clone(), &LENGTHS, SPANS.to_vec())
}

fn values<Bk: Backend>(t: Tensor<Bk, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `torch.nn.functional.adaptive_avg_pool1d`'s windows over `span`: `[floor(i·n/k), ceil((i+1)·n/k))`.
fn windows(span: Range<usize>, k: usize) -> Vec<Vec<usize>> {
    let n = span.len();
    (0..k).map(|i| (span.start + i * n / k..span.start + ((i + 1) * n).div_ceil(k)).collect()).collect()
}

/// Groups of one sample: each non-image position alone, the image tokens in `k` windows, in order.
fn groups(layout: &SeqLayout, b: usize, k: usize) -> Vec<Vec<usize>> {
    let sample = &layout.samples[b];
    let image = sample.image_positions();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for c in 0..sample.len() {
        if image.first() == Some(&c) {
            out.extend(windows(c..c + image.len(), k));
        } else if !sample.is_image(c) {
            out.push(vec![c]);
        }
    }
    out
}

/// Pools the image keys/values of the layers in `layers` (`windows[b]` windows for sample `b`).
struct PoolImage {
    layers: Range<usize>,
    windows: Vec<usize>,
}
impl<Bk: Backend> LayerHooks<Bk> for PoolImage {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        if !self.layers.contains(&layer) {
            return Ok(LayerRequest::default());
        }
        let pool = (0..layout.samples.len()).map(|b| groups(layout, b, self.windows[b])).collect();
        Ok(LayerRequest { kv: KvAccess::Pool(pool), ..LayerRequest::default() })
    }
}

/// Every position alone, through `KvAccess::Pool` or `KvAccess::Keep`.
struct AllPositions {
    pool: bool,
}
impl LayerHooks<B> for AllPositions {
    fn before_layer(&mut self, _layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        let all = layout.samples.iter().map(|s| (0..s.len()).collect::<Vec<_>>());
        let kv = if self.pool {
            KvAccess::Pool(all.map(|p| p.into_iter().map(|c| vec![c]).collect()).collect())
        } else {
            KvAccess::Keep(all.collect())
        };
        Ok(LayerRequest { kv, ..LayerRequest::default() })
    }
}

#[test]
fn singleton_groups_equal_keep_all_and_no_restriction() {
    let (llm, embeds) = setup::<B>(3, 3);
    let pooled = values(llm.forward_embeds(input(&embeds), &mut AllPositions { pool: true }).unwrap().hidden);
    let kept = values(llm.forward_embeds(input(&embeds), &mut AllPositions { pool: false }).unwrap().hidden);
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    assert_eq!(pooled, kept, "singleton pooling is keeping the same positions, bit for bit");
    // No restriction runs the fused CPU attention, the restricted forms the tensor-op one: equal
    // up to f32 rounding.
    let worst = pooled.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-5, "and no restriction at all: they differ by {worst}");
}

/// One decoder layer written out: pooled keys/values built group by group, plain softmax attention
/// with each slot visible from its last member on, then o_proj, residual, MLP and the final norm.
fn pooled_reference<Bk: Backend>(llm: &Llm<Bk>, embeds: &Tensor<Bk, 3>, pool: &[Vec<Vec<usize>>]) -> Tensor<Bk, 3> {
    let device = embeds.device();
    let [batch, len, _] = embeds.dims();
    let layer = &llm.model.layers[0];
    let attn = &layer.self_attn;
    let (h, hk, d) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
    let positions: Vec<i64> = (0..batch).flat_map(|_| 0..len as i64).collect();
    let positions = Tensor::<Bk, 2, Int>::from_data(TensorData::new(positions, [batch, len]), &device);
    let (cos, sin) = llm.rope.cos_sin(positions, embeds.dtype());
    let x = layer.input_layernorm.forward(embeds.clone());
    let heads = |t: Tensor<Bk, 3>, n: usize| t.reshape([batch, len, n, d]).swap_dims(1, 2);
    let q = apply_rope(heads(attn.q_proj.forward(x.clone()), h), &cos, &sin);
    let k = apply_rope(heads(attn.k_proj.forward(x.clone()), hk), &cos, &sin);
    let v = heads(attn.v_proj.forward(x), hk);
    let ints = |v: Vec<usize>| {
        let n = v.len();
        Tensor::<Bk, 1, Int>::from_data(TensorData::new(v.into_iter().map(|i| i as i64).collect::<Vec<_>>(), [n]), &device)
    };
    // query head j reads key/value head j / (h / hk), as transformers' repeat_kv lays them out.
    let kv_head = ints((0..h).map(|j| j / (h / hk)).collect());
    let mut contexts = Vec::new();
    for (b, groups) in pool.iter().enumerate() {
        let kb = k.clone().slice([b..b + 1, 0..hk, 0..len, 0..d]);
        let vb = v.clone().slice([b..b + 1, 0..hk, 0..len, 0..d]);
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for group in groups {
            ks.push(kb.clone().select(2, ints(group.clone())).mean_dim(2));
            vs.push(vb.clone().select(2, ints(group.clone())).mean_dim(2));
        }
        let slots = groups.len();
        let pk = Tensor::cat(ks, 2).select(1, kv_head.clone());
        let pv = Tensor::cat(vs, 2).select(1, kv_head.clone());
        let qb = q.clone().slice([b..b + 1, 0..h, 0..len, 0..d]);
        let scores = qb.matmul(pk.swap_dims(2, 3)) / (d as f64).sqrt();
        let hidden: Vec<bool> = (0..len).flat_map(|qi| groups.iter().map(move |g| *g.last().unwrap() > qi)).collect();
        let hidden = Tensor::<Bk, 4, Bool>::from_data(TensorData::new(hidden, [1, 1, len, slots]), &device);
        let scores = scores.mask_fill(hidden.expand([1, h, len, slots]), f32::NEG_INFINITY);
        contexts.push(softmax(scores, 3).matmul(pv));
    }
    let context = Tensor::cat(contexts, 0).swap_dims(1, 2).reshape([batch, len, h * d]);
    let x = embeds.clone() + attn.o_proj.forward(context);
    let x = x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x));
    llm.model.norm.forward(x)
}

/// The groups the hook asks for on the test batch (the layout before layer 0).
fn test_groups() -> Vec<Vec<Vec<usize>>> {
    let layout = SeqLayout {
        samples: LENGTHS
            .iter()
            .zip(&SPANS)
            .map(|(&n, span)| anchorage_llm::SampleLayout { index: (0..n).collect(), image: span.clone() })
            .collect(),
        padded_len: LEN,
    };
    (0..2).map(|b| groups(&layout, b, WINDOWS[b])).collect()
}

#[test]
fn pooled_layer_equals_written_out_attention() {
    let (llm, embeds) = setup::<B>(1, 7);
    let pool = test_groups();
    assert_eq!(pool[0][3..7], [vec![3, 4], vec![4, 5], vec![6, 7], vec![7, 8]]);
    assert_eq!(pool[1][2..5], [vec![2, 3], vec![4, 5], vec![6, 7]]);
    let mut hook = PoolImage { layers: 0..1, windows: WINDOWS.to_vec() };
    let ours = values(llm.forward_embeds(input(&embeds), &mut hook).unwrap().hidden);
    let theirs = values(pooled_reference(&llm, &embeds, &pool));
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    for (b, &n) in LENGTHS.iter().enumerate() {
        let real = b * LEN * 64..(b * LEN + n) * 64;
        let d = max_diff(&ours[real.clone()], &theirs[real.clone()]);
        assert!(d <= 1e-5, "sample {b}: max diff {d}");
        assert!(max_diff(&ours[real.clone()], &plain[real]) > 1e-3, "sample {b}: pooling changed nothing");
    }
}

#[test]
fn gradients_reach_every_pooled_member_as_in_the_reference() {
    let (llm, embeds) = setup::<AD>(1, 9);
    let device = embeds.device();
    // Loss on each sample's last real token only: in one layer, keys/values are the only path to
    // the other positions.
    let mut weight = vec![0f32; 2 * LEN * 64];
    for (b, &n) in LENGTHS.iter().enumerate() {
        for w in 0..64 {
            weight[((b * LEN) + n - 1) * 64 + w] = ((w * 7 + b) % 5) as f32 - 2.0;
        }
    }
    let weight = Tensor::<AD, 3>::from_data(TensorData::new(weight, [2, LEN, 64]), &device);
    let grad = |pooled_by_seam: bool| {
        let x = embeds.clone().detach().require_grad();
        let out = if pooled_by_seam {
            let mut hook = PoolImage { layers: 0..1, windows: WINDOWS.to_vec() };
            llm.forward_embeds(input(&x), &mut hook).unwrap().hidden
        } else {
            pooled_reference(&llm, &x, &test_groups())
        };
        let grads = (out * weight.clone()).sum().backward();
        values(x.grad(&grads).unwrap())
    };
    let (ours, theirs) = (grad(true), grad(false));
    for (b, &n) in LENGTHS.iter().enumerate() {
        let real = b * LEN * 64..(b * LEN + n) * 64;
        let d = max_diff(&ours[real.clone()], &theirs[real]);
        assert!(d <= 1e-5, "sample {b}: gradient max diff {d}");
        for p in SPANS[b].clone() {
            let row = &ours[(b * LEN + p) * 64..(b * LEN + p + 1) * 64];
            assert!(row.iter().any(|&g| g != 0.0), "sample {b}: image token {p} gets no gradient");
        }
    }
}

/// Last-token logits of sample `b`'s (grown) sequence, recomputed from scratch, with or without pooling.
fn recomputed_logits(llm: &Llm<B>, grown: &Tensor<B, 3>, b: usize, pooled: bool) -> Vec<f32> {
    let len = grown.dims()[1];
    let one = LlmInput::padded(grown.clone(), &[len], vec![SPANS[b].clone()]);
    let out = if pooled {
        llm.forward_embeds(one, &mut PoolImage { layers: 1..3, windows: vec![WINDOWS[b]] })
    } else {
        llm.forward_embeds(one, &mut NoHooks)
    };
    values(llm.logits(out.unwrap().hidden.slice([0..1, len - 1..len, 0..64])))
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap() as u32
}

#[test]
fn pooled_generation_equals_recomputing_the_grown_sequence() {
    let (llm, embeds) = setup::<B>(3, 3);
    let device = embeds.device();
    let hook = || PoolImage { layers: 1..3, windows: WINDOWS.to_vec() };
    let steps = 5;
    let options = GenerateOptions { max_new_tokens: steps, stop_tokens: vec![] };
    let generated = llm.generate(input(&embeds), &mut hook(), &mut KvCache::new(3), &options).unwrap();

    // The same, step by step: each decode step's logits against a from-scratch forward of the grown
    // sequence (one sample at a time, no cache).
    let mut cache = KvCache::new(3);
    let first = GenerateOptions { max_new_tokens: 1, stop_tokens: vec![] };
    let mut next: Vec<u32> = llm.generate(input(&embeds), &mut hook(), &mut cache, &first).unwrap().concat();
    // Pooled layers store text singletons plus one slot per window (sample 0: 8 + 4).
    assert_eq!(cache.lengths(), vec![LEN, 12, 12]);
    let mut grown: Vec<Tensor<B, 3>> = (0..2).map(|b| embeds.clone().slice([b..b + 1, 0..LENGTHS[b], 0..64])).collect();
    let mut tokens = vec![Vec::new(); 2];
    for step in 0..steps {
        for b in 0..2 {
            let pooled = recomputed_logits(&llm, &grown[b], b, true);
            assert_eq!(argmax(&pooled), next[b], "sample {b} step {step}");
            let plain = recomputed_logits(&llm, &grown[b], b, false);
            assert!(max_diff(&pooled, &plain) > 1e-4, "sample {b} step {step}: pooling changed nothing");
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
            let d = max_diff(cached, &recomputed_logits(&llm, &grown[b], b, true));
            assert!(d <= 1e-4, "sample {b} step {step}: cached vs recomputed logits differ by {d}");
            next[b] = argmax(cached);
        }
    }
    assert_eq!(cache.lengths(), vec![LEN + 4, 12 + 4, 12 + 4]);
    assert_eq!(generated, tokens);
}

/// Restricts keys/values at layers 1 and 2; `rows` also asks for the last rows there, which makes
/// the layer project every row and gather afterwards.
struct Keep {
    rows: bool,
}
impl LayerHooks<B> for Keep {
    fn before_layer(&mut self, layer: usize, layout: &SeqLayout) -> Result<LayerRequest, HookError> {
        if layer == 0 {
            return Ok(LayerRequest::default());
        }
        let keep = layout
            .samples
            .iter()
            .map(|s| (0..s.len()).filter(|&c| !s.is_image(c) || c % 3 == layer).collect())
            .collect();
        Ok(LayerRequest { rows: self.rows.then(|| layout.last_rows()), kv: KvAccess::Keep(keep) })
    }
}

#[test]
fn projecting_only_kept_rows_equals_gathering_after_projection() {
    let (llm, embeds) = setup::<B>(3, 3);
    let kept_first = values(llm.forward_embeds(input(&embeds), &mut Keep { rows: false }).unwrap().hidden);
    let all_first = values(llm.forward_embeds(input(&embeds), &mut Keep { rows: true }).unwrap().hidden);
    let d = max_diff(&kept_first, &all_first);
    assert!(d <= 1e-6, "forward: max diff {d}");
    let plain = values(llm.forward_embeds(input(&embeds), &mut NoHooks).unwrap().hidden);
    assert!(max_diff(&kept_first, &plain) > 1e-3, "the restriction does something");

    // One attention layer directly, both paths, with the cache they fill.
    let device = embeds.device();
    let attn = &llm.model.layers[1].self_attn;
    let positions: Vec<i64> = (0..2).flat_map(|_| 0..LEN as i64).collect();
    let positions = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [2, LEN]), &device);
    let (cos, sin) = llm.rope.cos_sin(positions, embeds.dtype());
    let kept: Vec<i64> = [vec![0, 2, 5, 6, 13], vec![1, 3, 4, 9, 10]].concat();
    let mut plan = AttnPlan::causal();
    plan.kv_index = Some(Tensor::from_data(TensorData::new(kept.clone(), [2, 5]), &device));
    let hide: Vec<bool> = (0..2).flat_map(|b| (0..LEN).flat_map(move |q| (0..5).map(move |m| kept_at(b, m) > q))).collect();
    fn kept_at(b: usize, m: usize) -> usize {
        [[0, 2, 5, 6, 13], [1, 3, 4, 9, 10]][b][m]
    }
    plan.mask = KeyMask::Explicit(Tensor::from_data(TensorData::new(hide, [2, LEN, 5]), &device));
    let run = |project_all_kv: bool| {
        let mut plan = plan.clone();
        plan.project_all_kv = project_all_kv;
        let mut slot = None;
        let out = attn.forward(embeds.clone(), &cos, &sin, &plan, CacheMode::Fill(&mut slot)).0;
        let entry = slot.unwrap();
        (values(out), entry.k.into_data().to_vec::<f32>().unwrap(), entry.v.into_data().to_vec::<f32>().unwrap())
    };
    let (a, b) = (run(false), run(true));
    assert_eq!(a.1.len(), 2 * 2 * 5 * 16, "the cache holds the 5 kept keys per sample");
    for (what, x, y) in [("output", &a.0, &b.0), ("cached k", &a.1, &b.1), ("cached v", &a.2, &b.2)] {
        let d = max_diff(x, y);
        assert!(d <= 1e-6, "{what}: max diff {d}");
    }
}

#[test]
fn bad_pool_requests_are_errors_naming_layer_sample_and_position() {
    struct Bad(LayerRequest);
    impl LayerHooks<B> for Bad {
        fn before_layer(&mut self, layer: usize, _layout: &SeqLayout) -> Result<LayerRequest, HookError> {
            Ok(if layer == 1 { self.0.clone() } else { LayerRequest::default() })
        }
    }
    let (llm, embeds) = setup::<B>(2, 3);
    let run = |request: LayerRequest| llm.forward_embeds(input(&embeds), &mut Bad(request)).unwrap_err().to_string();
    let pool = |second: Vec<Vec<usize>>| LayerRequest { kv: KvAccess::Pool(vec![vec![vec![0, 1]], second]), ..LayerRequest::default() };
    let err = run(pool(vec![vec![0], vec![3, 11]]));
    assert!(err.contains("layer 1, sample 1") && err.contains("group 1") && err.contains("position 11"), "{err}");
    let err = run(pool(vec![vec![4, 2]]));
    assert!(err.contains("layer 1, sample 1") && err.contains("sorted"), "{err}");
    let err = run(pool(vec![vec![]]));
    assert!(err.contains("group 0 is empty"), "{err}");
    // Keep and Pool at once cannot be written any more (one `KvAccess`); rows with a pool can.
    let rows = LayerRequest { rows: Some(vec![vec![0], vec![0]]), ..pool(vec![vec![0]]) };
    let err = run(rows);
    assert!(err.contains("layer 1") && err.contains("kv pool: cannot be combined with rows"), "{err}");
}
