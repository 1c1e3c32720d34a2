//! Attention under `Autodiff` on a CubeCL backend, side by side in one run: burn's `attention` op
//! as recorded (its fallback's dozen ops, each keeping what its backward needs) against
//! `recomputed_attention` (keeps q, k, v and the mask; recomputes the probabilities in the backward
//! pass). For each: the device memory held between the forward and the backward pass (what a
//! layer's attention adds to a training step's activations: CubeCL's `bytes_in_use` after the
//! forward minus before it, the output included), and the median time of forward + backward.
//!
//! `cargo bench -p anchorage-kernels --features wgpu --bench recomputed_attention -- --batch 4 --heads 4 --len 256`
//! (lavapipe on a CPU machine: its memory numbers are the allocator's, its times are not a GPU's);
//! on a GPU machine build with `--features cuda --no-run` and run the printed executable with
//! `--backend cuda`, e.g. LLaVA-7B's step: `--batch 16 --heads 32 --len 641 --head-dim 128 --dtype bf16`.

#![cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code, unused_imports))]

use std::time::Instant;

use anchorage_kernels::attention::{recomputed_attention, recomputed_attention_reference};
use anchorage_kernels::device_memory::bytes_in_use;
use burn::backend::Autodiff;
use burn::tensor::{backend::Backend, Distribution, FloatDType, Tensor};

struct Args {
    backend: String,
    batch: usize,
    heads: usize,
    len: usize,
    head_dim: usize,
    dtype: FloatDType,
    iters: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: if cfg!(feature = "cuda") { "cuda" } else { "wgpu" }.to_string(),
        batch: 4,
        heads: 4,
        len: 256,
        head_dim: 64,
        dtype: FloatDType::F32,
        iters: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let mut number = |name: &str| value().and_then(|v| v.parse::<usize>().map_err(|e| format!("{name}: {e}")));
        match flag.as_str() {
            "--bench" => {} // cargo bench passes it to harness = false targets
            "--backend" => args.backend = value()?,
            "--batch" => args.batch = number("--batch")?,
            "--heads" => args.heads = number("--heads")?,
            "--len" => args.len = number("--len")?,
            "--head-dim" => args.head_dim = number("--head-dim")?,
            "--iters" => args.iters = number("--iters")?.max(1),
            "--dtype" => {
                args.dtype = match value()?.as_str() {
                    "f32" => FloatDType::F32,
                    "f16" => FloatDType::F16,
                    "bf16" => FloatDType::BF16,
                    other => return Err(format!("--dtype {other}: f32, f16 or bf16")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// One path's numbers: bytes held from the forward to the backward pass, median seconds of both.
fn measure<B: Backend>(args: &Args, recompute: bool) -> (u64, f64) {
    type A<B> = Autodiff<B>;
    let device = Default::default();
    let shape = [args.batch, args.heads, args.len, args.head_dim];
    let input = |seed: u64| {
        <A<B> as Backend>::seed(&device, seed);
        Tensor::<A<B>, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device).cast(args.dtype).require_grad()
    };
    let mut held = 0;
    let mut times = Vec::new();
    for i in 0..=args.iters {
        let (q, k, v, w) = (input(1), input(2), input(3), input(4));
        B::sync(&device).expect("sync");
        let before = bytes_in_use::<B>(&device).unwrap_or(0);
        let t0 = Instant::now();
        let out = if recompute {
            recomputed_attention(&q, &k, &v, None, true).expect("recomputed_attention applies to Autodiff<B> here")
        } else {
            recomputed_attention_reference(q.clone(), k.clone(), v.clone(), None, true)
        };
        B::sync(&device).expect("sync");
        let after_forward = bytes_in_use::<B>(&device).unwrap_or(0);
        let grads = (out * w).sum().backward();
        let _ = (q.grad(&grads), k.grad(&grads), v.grad(&grads));
        B::sync(&device).expect("sync");
        let seconds = t0.elapsed().as_secs_f64();
        // The first call also compiles (and on CUDA autotunes) the kernels: neither its time nor its
        // memory counts; the memory is the last call's.
        held = after_forward.saturating_sub(before);
        if i > 0 {
            times.push(seconds);
        }
    }
    times.sort_by(f64::total_cmp);
    (held, times[times.len() / 2])
}

fn run<B: Backend>(args: &Args) {
    let (burn_bytes, burn_s) = measure::<B>(args, false);
    let (ours_bytes, ours_s) = measure::<B>(args, true);
    let scores = args.batch * args.heads * args.len * args.len * burn::tensor::DType::from(args.dtype).size();
    println!(
        "backend {} ({}), q/k/v [{}, {}, {}, {}] {:?}, causal; one [B, H, L, L] tensor is {:.1} MiB",
        args.backend,
        B::name(&Default::default()),
        args.batch,
        args.heads,
        args.len,
        args.head_dim,
        args.dtype,
        scores as f64 / 1048576.0
    );
    println!("| path | held from forward to backward (MiB) | forward + backward (ms, median of {}) |", args.iters);
    println!("| --- | ---: | ---: |");
    println!("| burn's attention op under Autodiff | {:.1} | {:.2} |", burn_bytes as f64 / 1048576.0, burn_s * 1e3);
    println!("| recomputed_attention | {:.1} | {:.2} |", ours_bytes as f64 / 1048576.0, ours_s * 1e3);
    println!(
        "memory held: {:.2}x less; time: {:.2}x burn's",
        burn_bytes as f64 / ours_bytes.max(1) as f64,
        ours_s / burn_s
    );
    // One JSON line for the GPU check's report (gpu-check/report.py).
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "{{\"bench\": \"recomputed_attention\", \"shape\": [{}, {}, {}, {}], \"dtype\": \"{:?}\", \"scores_mib\": {:.3}, \"held_mib_burn\": {:.3}, \"held_mib_recomputed\": {:.3}, \"ms_burn\": {:.4}, \"ms_recomputed\": {:.4}}}",
        args.batch,
        args.heads,
        args.len,
        args.head_dim,
        args.dtype,
        scores as f64 / 1048576.0,
        mib(burn_bytes),
        mib(ours_bytes),
        burn_s * 1e3,
        ours_s * 1e3
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: recomputed_attention [--backend cuda|wgpu] [--batch B] [--heads H] [--len L] [--head-dim D] [--dtype f32|f16|bf16] [--iters N]");
            std::process::exit(2);
        }
    };
    match args.backend.as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => run::<burn::backend::Cuda>(&args),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<burn::backend::Wgpu>(&args),
        other => {
            eprintln!("backend {other} is not compiled in (features: cuda, wgpu)");
            std::process::exit(2);
        }
    }
}
