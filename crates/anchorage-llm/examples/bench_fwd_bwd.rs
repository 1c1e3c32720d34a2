//! Forward + backward w.r.t. the input embeddings through a frozen LLM (what connector training
//! does), timed on `Autodiff<Flex>`. Driven by `bench/bench_llm.py`, which runs transformers on the
//! same checkpoint in the same run and prints the ratio.
//!
//! Usage: `bench_fwd_bwd MODEL_DIR BATCH SEQ ITERS` -> one JSON line on stdout.

use std::time::Instant;

use anchorage_llm::{load_llm, LlmInput, NoHooks};
use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};

type B = Autodiff<Flex>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: bench_fwd_bwd MODEL_DIR BATCH SEQ ITERS".into());
    }
    let (batch, seq, iters): (usize, usize, usize) = (args[2].parse()?, args[3].parse()?, args[4].parse()?);
    let device = Default::default();
    let llm = load_llm::<B>(std::path::Path::new(&args[1]), DType::F32, &device)?.no_grad();
    let width = llm.config.hidden_size;
    B::seed(&device, 0);
    let base = Tensor::<B, 3>::random([batch, seq, width], Distribution::Normal(0.0, 1.0), &device);
    let mut times = Vec::new();
    let mut grad_norm = 0.0;
    for _ in 0..iters + 1 {
        let embeds = base.clone().detach().require_grad();
        let start = Instant::now();
        let out = llm.forward_embeds(LlmInput::plain(embeds.clone()), &mut NoHooks)?;
        let loss = llm.logits(out.hidden).square().mean();
        let grads = loss.backward();
        let grad = embeds.grad(&grads).ok_or("no gradient reached the embeddings")?;
        grad_norm = grad.square().sum().sqrt().into_scalar().to_f64();
        times.push(start.elapsed().as_secs_f64());
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"median_s\": {}, \"min_s\": {}, \"grad_norm\": {}}}",
        times[times.len() / 2],
        times[0],
        grad_norm
    );
    Ok(())
}
