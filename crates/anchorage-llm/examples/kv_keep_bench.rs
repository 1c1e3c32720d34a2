//! Side by side: the decoder's prefill with ACT-IN-LLM-shaped key/value restriction, projecting
//! only the kept rows (the default) against projecting every row and gathering afterwards (what
//! the layer did before, and still does where it reports attention rows), plus the unrestricted
//! forward and the pooled (AvgPool-1D) variant with the same number of keys. One random Llama at
//! LLaVA-1.5 proportions (35 text + 576 image + 40 text tokens), 8 layers: layers 0-1 full, then
//! stages 2-3 / 4-5 / 6-7 keeping 0.6 / 0.4 / 0.2 of the image keys (ACT's default 70% coverage on
//! 8 layers). The layers run by hand with the same plans `forward_embeds` builds.
//!
//! cargo run --release -p anchorage-llm --example kv_keep_bench [-- ROUNDS]

use std::time::Instant;

use anchorage_llm::{AttnPlan, CacheMode, KeyMask, LlamaConfig, Llm};
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};

type B = burn::backend::Flex;

const BEFORE: usize = 35;
const IMAGE: usize = 576;
const AFTER: usize = 40;
const LEN: usize = BEFORE + IMAGE + AFTER;
const STAGES: [(usize, f64); 6] = [(2, 0.6), (3, 0.6), (4, 0.4), (5, 0.4), (6, 0.2), (7, 0.2)];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Full,
    KeepProjectAll,
    KeepProjectKept,
    Pool,
}

/// Adaptive windows over the image: `k` groups, each text position alone.
fn groups(k: usize) -> Vec<Vec<usize>> {
    let mut g: Vec<Vec<usize>> = (0..BEFORE).map(|c| vec![c]).collect();
    g.extend((0..k).map(|i| (BEFORE + i * IMAGE / k..BEFORE + ((i + 1) * IMAGE).div_ceil(k)).collect()));
    g.extend((BEFORE + IMAGE..LEN).map(|c| vec![c]));
    g
}

/// The plan of a restricted (or pooled) layer: slot `s` visible from `last[s]` on.
fn plan(mode: Mode, ratio: f64, device: &Device<B>) -> AttnPlan<B> {
    let k = (ratio * IMAGE as f64).round() as usize;
    let groups = groups(k);
    let slots = groups.len();
    let last: Vec<usize> = groups.iter().map(|g| *g.last().unwrap()).collect();
    let hide: Vec<bool> = (0..LEN).flat_map(|q| last.iter().map(move |&l| l > q)).collect();
    let mut plan = AttnPlan::causal();
    plan.mask = KeyMask::Explicit(Tensor::from_data(TensorData::new(hide, [1, LEN, slots]), device));
    if mode == Mode::Pool {
        let mut w = vec![0f32; slots * LEN];
        for (s, g) in groups.iter().enumerate() {
            for &m in g {
                w[s * LEN + m] = 1.0 / g.len() as f32;
            }
        }
        plan.kv_pool = Some(Tensor::from_data(TensorData::new(w, [1, slots, LEN]), device));
    } else {
        // the centre of each window: a subset of the same size
        let kept: Vec<i64> = groups.iter().map(|g| g[(g.len() - 1) / 2] as i64).collect();
        let hide: Vec<bool> = (0..LEN).flat_map(|q| kept.iter().map(move |&c| c as usize > q)).collect();
        plan.mask = KeyMask::Explicit(Tensor::from_data(TensorData::new(hide, [1, LEN, slots]), device));
        plan.kv_index = Some(Tensor::from_data(TensorData::new(kept, [1, slots]), device));
        plan.project_all_kv = mode == Mode::KeepProjectAll;
    }
    plan
}

fn forward(llm: &Llm<B>, embeds: &Tensor<B, 3>, plans: &[AttnPlan<B>], cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Vec<f32> {
    let mut x = embeds.clone();
    for (layer, plan) in llm.model.layers.iter().zip(plans) {
        x = layer.forward(x, cos, sin, plan, CacheMode::None).0;
    }
    llm.model.norm.forward(x).into_data().to_vec::<f32>().expect("f32 output")
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let device = Default::default();
    B::seed(&device, 7);
    let config = LlamaConfig {
        hidden_size: 256,
        intermediate_size: 688,
        num_hidden_layers: 8,
        num_attention_heads: 8,
        num_key_value_heads: 8,
        head_dim: 32,
        ..LlamaConfig::tiny()
    };
    let llm = config.init::<B>(&device);
    let embeds = Tensor::<B, 3>::random([1, LEN, 256], Distribution::Normal(0.0, 1.0), &device);
    let positions = Tensor::<B, 1, Int>::arange(0..LEN as i64, &device).reshape([1, LEN]);
    let (cos, sin) = llm.rope.cos_sin(positions, embeds.dtype());
    let modes = [
        ("no restriction", Mode::Full),
        ("kv_keep, project all rows then gather (before)", Mode::KeepProjectAll),
        ("kv_keep, project kept rows only (after)", Mode::KeepProjectKept),
        ("kv_pool, AvgPool-1D windows", Mode::Pool),
    ];
    let plans: Vec<Vec<AttnPlan<B>>> = modes
        .iter()
        .map(|&(_, mode)| {
            (0..8)
                .map(|l| match STAGES.iter().find(|(s, _)| *s == l) {
                    Some(&(_, ratio)) if mode != Mode::Full => plan(mode, ratio, &device),
                    _ => AttnPlan::causal(),
                })
                .collect()
        })
        .collect();
    // Same answer from both kv_keep paths.
    let (a, b) = (forward(&llm, &embeds, &plans[1], &cos, &sin), forward(&llm, &embeds, &plans[2], &cos, &sin));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    // Rounds alternate the modes so that load drift (shared VM) hits all alike; round 0 warms up.
    let mut times = vec![Vec::new(); modes.len()];
    for round in 0..=rounds {
        for (i, p) in plans.iter().enumerate() {
            let t = Instant::now();
            let out = forward(&llm, &embeds, p, &cos, &sin);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(out);
            if round > 0 {
                times[i].push(ms);
            }
        }
    }
    println!("prefill 1 x {LEN} ({BEFORE} + {IMAGE} image + {AFTER}), Llama 8 layers d=256 m=688 8 heads, Flex CPU, median of {rounds}; kv_keep paths differ by at most {diff:e}");
    println!("| layers 2-7 | prefill ms (median) | min ms | vs no restriction | vs project-all |");
    println!("|---|---|---|---|---|");
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    for (i, (name, _)) in modes.iter().enumerate() {
        println!(
            "| {name} | {:.1} | {:.1} | {:.3}x | {:.3}x |",
            medians[i],
            times[i][0],
            medians[i] / medians[0],
            medians[i] / medians[1]
        );
    }
}
