//! Times the anchor-selection reference twin (`anchorage_kernels::select_anchors` on flex) at CLIP
//! ViT-L/14-336 sizes (H 16, T 577). Prints one JSON object.
//!
//! `cargo run -p anchorage-connectors --example bench_anchors -- BATCH COUNT REPS`; the side-by-side
//! driver with AcFormer's host loop in PyTorch is `bench/bench_anchors.py`.

use std::time::Instant;

use anchorage_connectors::kernels::select_anchors;
use burn::backend::Flex;
use burn::tensor::{activation::softmax, Distribution, Tensor};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (batch, count, reps) = (args.first().copied().unwrap_or(32), args.get(1).copied().unwrap_or(144), args.get(2).copied().unwrap_or(5));
    let dev = Default::default();
    let att = softmax(Tensor::<Flex, 3>::random([batch, 16, 577], Distribution::Normal(0.0, 2.0), &dev), 2);
    let run = || select_anchors(att.clone(), count).expect("select").into_data();
    run();
    let t = Instant::now();
    for _ in 0..reps {
        run();
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    println!("{{\"batch\": {batch}, \"count\": {count}, \"ms\": {ms:.3}}}");
}
