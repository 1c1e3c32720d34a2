//! The fused CPU attention vs its tensor-op twin (burn's attention op with the heads split, RoPE and
//! the mask written out), side by side in one run on burn-flex, forward alone (plain `Flex`) and
//! forward + backward (`Autodiff<Flex>`, gradients of q, k and v), at the demo's sizes and a
//! CLIP ViT-L/14-336 layer's.
//!
//! `cargo bench -p anchorage-kernels --bench fused_attention [-- --iters N --threads T]`
//! (a release build; `--threads` sets rayon's pool, which burn-flex and the kernel share).
//! Every number is the mean over `--iters` calls after two warm-up calls.

use std::time::Instant;

use anchorage_kernels::attention::reference::attention_reference;
use anchorage_kernels::attention::{fused_attention, AttentionSpec, Visibility};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor};

type A = Autodiff<Flex>;

struct Size {
    name: &'static str,
    batch: usize,
    len: usize,
    heads: usize,
    head_dim: usize,
    causal: bool,
}

const SIZES: &[Size] = &[
    Size { name: "demo LLM slice (8 x 128 tokens, 8 heads of 16, causal + RoPE)", batch: 8, len: 128, heads: 8, head_dim: 16, causal: true },
    Size { name: "demo LLM long slice (8 x 300 tokens, 8 heads of 16, causal + RoPE)", batch: 8, len: 300, heads: 8, head_dim: 16, causal: true },
    Size { name: "demo vision tower (16 x 65 tokens, 4 heads of 32, no mask)", batch: 16, len: 65, heads: 4, head_dim: 32, causal: false },
    Size { name: "CLIP ViT-L/14-336 layer (1 x 577 tokens, 16 heads of 64, no mask)", batch: 1, len: 577, heads: 16, head_dim: 64, causal: false },
    Size { name: "7B decoder layer (1 x 640 tokens, 32 heads of 128, causal + RoPE)", batch: 1, len: 640, heads: 32, head_dim: 128, causal: true },
];

fn mean_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1000.0 / iters as f64
}

fn main() {
    let mut iters = 10;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bench" => {}
            "--iters" => iters = it.next().and_then(|v| v.parse().ok()).unwrap_or(iters),
            "--threads" => {
                let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
            }
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!("| size | pass | tensor ops (ms) | fused (ms) | ratio |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let device = Default::default();
    for s in SIZES {
        let width = s.heads * s.head_dim;
        let spec = AttentionSpec {
            heads: s.heads,
            kv_heads: s.heads,
            head_dim: s.head_dim,
            visibility: if s.causal {
                // the last sample of the batch a little shorter: right padding
                Visibility::Causal { lengths: (0..s.batch).map(|i| if i + 1 == s.batch { s.len * 3 / 4 } else { s.len }).collect() }
            } else {
                Visibility::All
            },
        };
        let x = || Tensor::<Flex, 3>::random([s.batch, s.len, width], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (x(), x(), x());
        let angles = Tensor::<Flex, 4>::random([s.batch, 1, s.len, s.head_dim], Distribution::Uniform(-3.0, 3.0), &device);
        let (cos, sin) = (angles.clone().cos(), angles.sin());
        let rope = s.causal.then_some((&cos, &sin));

        let reference = mean_ms(iters, || {
            let out = attention_reference(q.clone(), k.clone(), v.clone(), rope, &spec);
            let _ = out.into_data();
        });
        let fused = mean_ms(iters, || {
            let out = fused_attention(&q, &k, &v, rope, &spec).expect("flex");
            let _ = out.into_data();
        });
        println!("| {} | forward | {reference:.2} | {fused:.2} | {:.2}x |", s.name, reference / fused);

        let lift = |t: &Tensor<Flex, 3>| Tensor::<A, 3>::from_inner(t.clone()).require_grad();
        let (acos, asin) = (Tensor::<A, 4>::from_inner(cos.clone()), Tensor::<A, 4>::from_inner(sin.clone()));
        let arope = s.causal.then_some((&acos, &asin));
        let step = |fused: bool| {
            let (q, k, v) = (lift(&q), lift(&k), lift(&v));
            let out = if fused {
                fused_attention(&q, &k, &v, arope, &spec).expect("autodiff flex")
            } else {
                attention_reference(q.clone(), k.clone(), v.clone(), arope, &spec)
            };
            let grads = out.sum().backward();
            let _ = q.grad(&grads).map(|g| g.into_data());
        };
        let reference = mean_ms(iters, || step(false));
        let fused = mean_ms(iters, || step(true));
        println!("| {} | forward + backward | {reference:.2} | {fused:.2} | {:.2}x |", s.name, reference / fused);
    }
}
