//! Times the vision tower's forward on flex (random weights). Driven side by side with
//! transformers by `benches/vision_forward.py`; prints one JSON line.
//!
//!     cargo run -p anchorage-vision --example vision_forward -- BATCH ITERS [f32|bf16] [vit_b16_224|vit_l14_336|tiny]

use std::time::Instant;

use anchorage_vision::{ClipVisionConfig, VisionRequest};
use burn::backend::Flex;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, FloatDType, Tensor};

type B = Flex;

struct Cast(FloatDType);
impl ModuleMapper<B> for Cast {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let d = self.0;
        p.map(|t| t.cast(d))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dtype = args.get(3).map(String::as_str).unwrap_or("f32");
    let preset = args.get(4).map(String::as_str).unwrap_or("vit_b16_224");
    let config = match preset {
        "vit_l14_336" => ClipVisionConfig::vit_l14_336(),
        "tiny" => ClipVisionConfig::tiny(),
        _ => ClipVisionConfig::new(224, 16, 768, 3072, 12, 12),
    };
    let device = Default::default();
    let mut model = config.init::<B>(&device).no_grad();
    if dtype == "bf16" {
        model = model.map(&mut Cast(FloatDType::BF16));
    }
    let s = config.image_size;
    let pixels: Tensor<B, 4> =
        Tensor::random([batch, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
    let request = VisionRequest::select(-1);
    let run = || {
        let out = model.forward(pixels.clone(), &request).expect("forward");
        // read back so the timing includes all the work
        let _ = out.selected.into_data();
    };
    run(); // warm-up (also materialises lazily initialised weights)
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"impl\": \"anchorage-flex\", \"preset\": \"{preset}\", \"dtype\": \"{dtype}\", \"batch\": {batch}, \"iters\": {iters}, \"median_ms\": {:.2}, \"min_ms\": {:.2}}}",
        times[times.len() / 2],
        times[0]
    );
}
