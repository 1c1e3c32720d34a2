//! Side-by-side CPU prefill of every compression policy on one small random Llama at LLaVA-1.5
//! proportions (35 text tokens, 576 image tokens, 40 text tokens): wall time (median of runs),
//! peak heap growth during the forward (a counting global allocator; burn's Flex backend allocates
//! through it), and FastV's FLOPs model (arXiv 2403.06764) both for this model (from the forward's trace) and for
//! LLaVA-1.5-7B shapes (from the settings).
//!
//! cargo run -p anchorage-compress --example prefill_bench [-- ROUNDS]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anchorage_compress::{
    ActConfig, ActSelection, CompressionPolicy, FastVConfig, FastVRule, FlopsReport, FlopsShape, HimapConfig,
};
use anchorage_llm::{LlamaConfig, LlmInput};
use burn::prelude::*;
use burn::tensor::Distribution;

type B = burn::backend::Flex;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const BEFORE: usize = 35;
const IMAGE: usize = 576;
const AFTER: usize = 40;
const LAYERS: usize = 8;

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let device = Default::default();
    B::seed(&device, 7);
    let config = LlamaConfig {
        hidden_size: 256,
        intermediate_size: 688,
        num_hidden_layers: LAYERS,
        num_attention_heads: 8,
        num_key_value_heads: 8,
        head_dim: 32,
        ..LlamaConfig::tiny()
    };
    let llm = config.init::<B>(&device);
    let len = BEFORE + IMAGE + AFTER;
    let embeds = Tensor::<B, 3>::random([1, len, 256], Distribution::Normal(0.0, 1.0), &device);
    let spans = std::iter::once(BEFORE..BEFORE + IMAGE).collect::<Vec<_>>();
    let input = || LlmInput::padded(embeds.clone(), &[len], spans.clone());
    let small = FlopsShape { hidden: 256, intermediate: 688 };
    let llava = FlopsShape { hidden: 4096, intermediate: 11008 };

    let policies: Vec<(&str, CompressionPolicy, CompressionPolicy)> = vec![
        ("none", CompressionPolicy::None, CompressionPolicy::None),
        (
            "fastv K=2 keep 0.5 last-token",
            CompressionPolicy::FastV(FastVConfig::default()),
            CompressionPolicy::FastV(FastVConfig::default()),
        ),
        (
            "fastv K=2 keep 0.25 last-token",
            CompressionPolicy::FastV(FastVConfig { keep_ratio: 0.25, ..FastVConfig::default() }),
            CompressionPolicy::FastV(FastVConfig { keep_ratio: 0.25, ..FastVConfig::default() }),
        ),
        (
            "fastv K=2 keep 0.5 average-received",
            CompressionPolicy::FastV(FastVConfig { rule: FastVRule::AverageReceived, ..FastVConfig::default() }),
            CompressionPolicy::FastV(FastVConfig { rule: FastVRule::AverageReceived, ..FastVConfig::default() }),
        ),
        (
            "himap K1=2 0.5, K2=4 (7B: 8) 0.125",
            CompressionPolicy::Himap(HimapConfig { deep_layer: 4, ..HimapConfig::default() }),
            CompressionPolicy::Himap(HimapConfig::default()),
        ),
        (
            "act 70% layers, keep 0.6/0.4/0.2, attention",
            CompressionPolicy::Act(ActConfig::default()),
            CompressionPolicy::Act(ActConfig::default()),
        ),
        (
            "act 70% layers, keep 0.6/0.4/0.2, uniform windows",
            CompressionPolicy::Act(ActConfig { selection: ActSelection::UniformWindows, ..ActConfig::default() }),
            CompressionPolicy::Act(ActConfig { selection: ActSelection::UniformWindows, ..ActConfig::default() }),
        ),
        (
            "act 70% layers, keep 0.6/0.4/0.2, avg-pool",
            CompressionPolicy::Act(ActConfig { selection: ActSelection::AvgPool, ..ActConfig::default() }),
            CompressionPolicy::Act(ActConfig { selection: ActSelection::AvgPool, ..ActConfig::default() }),
        ),
    ];

    println!("prefill of 1 x {len} tokens ({BEFORE} + {IMAGE} image + {AFTER}), Llama {LAYERS} layers d=256 m=688 8 heads, Flex CPU, median of {runs}");
    println!("| policy | prefill ms | vs none | peak heap MiB | vs none | FLOPs model (this model) | FLOPs model (LLaVA-1.5-7B, 32 layers) |");
    println!("|---|---|---|---|---|---|---|");
    // Rounds alternate the policies so that drift in machine load (shared 2-core VM) hits all alike;
    // round 0 is a warm-up.
    let mut times = vec![Vec::new(); policies.len()];
    let mut peaks = vec![0usize; policies.len()];
    let mut reports = vec![None; policies.len()];
    for round in 0..=runs {
        for (i, (_, policy, _)) in policies.iter().enumerate() {
            let mut hooks = policy.hooks(LAYERS).expect("valid policy");
            let start_bytes = CURRENT.load(Ordering::Relaxed);
            PEAK.store(start_bytes, Ordering::Relaxed);
            let t = Instant::now();
            let out = llm.forward_embeds(input(), &mut hooks).expect("forward");
            let hidden = out.hidden.into_data();
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            drop(hidden);
            if round > 0 {
                times[i].push(elapsed);
                peaks[i] = peaks[i].max(PEAK.load(Ordering::Relaxed).saturating_sub(start_bytes));
            }
            reports[i] = hooks.trace().map(|tr| FlopsReport::from_trace(small, tr, 0));
        }
    }
    let mut base: Option<(f64, f64)> = None;
    for (i, (name, _, policy_7b)) in policies.iter().enumerate() {
        times[i].sort_by(f64::total_cmp);
        let ms = times[i][times[i].len() / 2];
        let mib = peaks[i] as f64 / (1024.0 * 1024.0);
        let (base_ms, base_mib) = *base.get_or_insert((ms, mib));
        let here = reports[i].as_ref().map_or(1.0, FlopsReport::ratio);
        let schedule = policy_7b.schedule(32, len, IMAGE).expect("valid 7B policy");
        let big = FlopsReport::from_schedule(llava, &schedule).ratio();
        println!(
            "| {name} | {ms:.1} | {:.2}x | {mib:.1} | {:.2}x | {here:.3} | {big:.3} |",
            ms / base_ms,
            mib / base_mib
        );
    }
}
