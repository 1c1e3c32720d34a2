//! Where the ViT-B/16 forward's time goes on flex: the same op shapes as one forward, timed by
//! kind (linear matmuls, fused attention, layer norms, activation, residual adds, head reshapes).
//!
//!     cargo run -p anchorage-vision --example vision_profile -- [BATCH]

use std::time::Instant;

use burn::backend::Flex;
use burn::nn::{LayerNormConfig, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Distribution, Tensor};

type B = Flex;

fn time<T>(label: &str, layers: usize, f: impl Fn() -> T) {
    let _ = f();
    let t = Instant::now();
    for _ in 0..layers {
        let _ = f();
    }
    println!("{label:<40} {:>8.1} ms", t.elapsed().as_secs_f64() * 1e3);
}

fn main() {
    let b: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (t, d, i, h, layers) = (197usize, 768usize, 3072usize, 12usize, 12usize);
    let dev = Default::default();
    let x: Tensor<B, 3> = Tensor::random([b, t, d], Distribution::Normal(0.0, 1.0), &dev);
    let xi: Tensor<B, 3> = Tensor::random([b, t, i], Distribution::Normal(0.0, 1.0), &dev);
    let qkvo = LinearConfig::new(d, d).init::<B>(&dev);
    let fc1 = LinearConfig::new(d, i).init::<B>(&dev);
    let fc2 = LinearConfig::new(i, d).init::<B>(&dev);
    let ln = LayerNormConfig::new(d).init::<B>(&dev);
    let sync = |y: Tensor<B, 3>| y.into_data();
    time("4 x linear d->d (q,k,v,out)", layers, || {
        for _ in 0..4 {
            sync(qkvo.forward(x.clone()));
        }
    });
    time("fc1 d->4d", layers, || sync(fc1.forward(x.clone())));
    time("fc2 4d->d", layers, || sync(fc2.forward(xi.clone())));
    time("quick_gelu on [T,4d]", layers, || {
        sync(xi.clone() * sigmoid(xi.clone() * 1.702))
    });
    time("2 x layer norm", layers, || {
        sync(ln.forward(x.clone()));
        sync(ln.forward(x.clone()));
    });
    time("2 x residual add", layers, || {
        sync(x.clone() + x.clone());
        sync(x.clone() + x.clone());
    });
    let heads = |y: Tensor<B, 3>| y.reshape([b, t, h, d / h]).swap_dims(1, 2);
    time("3 x split heads + merge (copies)", layers, || {
        for _ in 0..3 {
            let _ = heads(x.clone()).into_data();
        }
        let _ = heads(x.clone())
            .swap_dims(1, 2)
            .reshape([b, t, d])
            .into_data();
    });
    let (q, k, v) = (heads(x.clone()), heads(x.clone()), heads(x.clone()));
    time("fused attention", layers, || {
        attention(
            q.clone(),
            k.clone(),
            v.clone(),
            None,
            None,
            AttentionModuleOptions::default(),
        )
        .into_data()
    });
}
