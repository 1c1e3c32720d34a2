//! Times each connector at LLaVA-1.5 sizes (CLIP ViT-L/14-336 → 7B): forward, and forward +
//! backward under Autodiff, on flex (CPU). Prints one JSON object per line.
//!
//! `cargo run -p anchorage-connectors --example bench_connectors -- BATCH REPS [NAME]`; the side-by-side
//! driver with PyTorch is `bench/bench_connectors.py`.

use std::time::Instant;

use anchorage_connectors::{AnchorFormerConfig, CAbstractorConfig, ConnectorConfig, MlpConfig, ResamplerConfig};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{backend::Backend, Distribution, Tensor};

fn time<B: Backend>(config: &ConnectorConfig, batch: usize, reps: usize, backward: bool) -> f64 {
    let dev = Default::default();
    let tokens = if matches!(config, ConnectorConfig::Mlp(_) | ConnectorConfig::CAbstractor(_)) { 576 } else { 577 };
    let c = config.init::<Autodiff<B>>(&dev).expect("connector");
    let x = Tensor::<Autodiff<B>, 3>::random([batch, tokens, 1024], Distribution::Normal(0.0, 1.0), &dev);
    let att = Tensor::<Autodiff<B>, 3>::random([batch, 16, tokens], Distribution::Uniform(0.0, 1.0), &dev).softmax_last();
    let run = || {
        let y = c.forward(x.clone(), Some(att.clone())).expect("forward");
        if backward {
            let _ = y.sum().backward();
        } else {
            let _ = y.into_data();
        }
    };
    run(); // warm-up (and lazy parameter initialisation)
    let t = Instant::now();
    for _ in 0..reps {
        run();
    }
    t.elapsed().as_secs_f64() * 1000.0 / reps as f64
}

trait SoftmaxLast {
    fn softmax_last(self) -> Self;
}
impl<B: Backend> SoftmaxLast for Tensor<B, 3> {
    fn softmax_last(self) -> Self {
        burn::tensor::activation::softmax(self, 2)
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let only: Option<&String> = raw.iter().find(|a| a.parse::<usize>().is_err());
    let batch = args.first().copied().unwrap_or(2);
    let reps = args.get(1).copied().unwrap_or(3);
    let cases = [
        ("mlp2x_gelu", ConnectorConfig::Mlp(MlpConfig::new(1024, 4096))),
        ("c_abstractor", ConnectorConfig::CAbstractor(CAbstractorConfig::honeybee_m144())),
        ("resampler", ConnectorConfig::Resampler(ResamplerConfig::acformer_baseline())),
        ("anchor_former_145", ConnectorConfig::AnchorFormer(AnchorFormerConfig::anchors_145())),
        ("anchor_former_257", ConnectorConfig::AnchorFormer(AnchorFormerConfig::anchors_257())),
    ];
    for (name, config) in cases {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let fwd = time::<Flex>(&config, batch, reps, false);
        let fwd_bwd = time::<Flex>(&config, batch, reps, true);
        println!("{{\"name\": \"{name}\", \"batch\": {batch}, \"forward_ms\": {fwd:.2}, \"forward_backward_ms\": {fwd_bwd:.2}}}");
    }
}
