//! `train bench matmul`: burn's matrix product on a backend at the shapes of the 7B stage-1 step
//! (micro-batch 16, 641 tokens: the LLM's linear layers forward and backward to the input, the LM
//! head, attention's two batched products, the vision tower's MLP), beside PyTorch's `torch.matmul`
//! at the same shapes (`benches/matmul.py`, run after ours on the same device). Each product is
//! checked first: 16 sampled entries against f64 dot products of the same inputs, within the
//! rounding of the dtype ([`allowed_error`]). One JSON line; a wrong product then makes it exit 1.
//!
//! It tells how much of the step's gap to transformers is the matmul itself: on an H200 the 7B
//! step ran at 3.6% MFU (docs/benchmarks.md). With `--kernels`, CubeCL's other matmul kernels
//! (anchorage-kernels' `matmul_kernels`) are checked and timed beside burn's choice at each shape.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anchorage_train::recipe::Backend;
use anyhow::{bail, Context};
use burn::tensor::{backend::Backend as BurnBackend, DType, Distribution, Tensor};
use clap::Args;

use crate::backend::BackendJob;

#[derive(Debug, Args)]
pub struct MatmulArgs {
    /// Backend: `cuda`, `wgpu` (binaries built with that feature) or `flex`.
    #[arg(long, value_parser = crate::backend::parse, default_value = "flex")]
    pub backend: Backend,
    /// Device index on that backend.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Element type of both operands and the output: `bf16`, `f16` or `f32`.
    #[arg(long, default_value = "bf16")]
    pub dtype: String,
    /// `llava7b` (the 7B step's shapes) or `small` (the same products shrunk, for a CPU run).
    #[arg(long, default_value = "llava7b")]
    pub shapes: String,
    /// Timed products per shape (mean).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Untimed products per shape first (kernel compilation, tuning, allocation).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The device's peak dense TFLOP/s in this dtype, for the share of it reached.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// A Python with PyTorch: times `torch.matmul` at the same shapes (`--torch-script`).
    #[arg(long)]
    pub torch_python: Option<String>,
    /// The PyTorch side's script.
    #[arg(long, default_value = "benches/matmul.py")]
    pub torch_script: PathBuf,
    /// Print the shapes as JSON and exit (nothing runs).
    #[arg(long)]
    pub list: bool,
    /// Also time these matmul kernels beside burn's choice, each checked the same way
    /// (comma-separated): CubeCL's (`anchorage_kernels::matmul_kernels::MATMUL_KERNELS`) and
    /// `cublas` (NVIDIA's cuBLAS, as `devices.matmul = "cublas"` runs it; CUDA only); `all` for
    /// every one. CubeCL backends only (wgpu, cuda).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
}

/// The `--kernels` name of cuBLAS (anchorage's cuBLAS engine, `anchorage_kernels::gemm`).
const CUBLAS: &str = "cublas";

/// One product: `batch` times `[m, k] x [k, n]`; `rhs_transposed`: the right operand is stored
/// `[n, k]` and transposed (the backward pass to a linear layer's input); `rhs_broadcast`: the
/// right operand is one `[1, k, n]` matrix broadcast over the batch, as burn's `linear` multiplies
/// `[batch, len, d]` by its weight (cuBLAS and `torch.nn.functional.linear` fold the batch into
/// rows instead).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub rhs_transposed: bool,
    pub rhs_broadcast: bool,
}

impl Shape {
    fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.k * self.n) as f64
    }
}

const fn shape(name: &'static str, batch: usize, m: usize, k: usize, n: usize, rhs_transposed: bool) -> Shape {
    Shape { name, batch, m, k, n, rhs_transposed, rhs_broadcast: false }
}

/// The 7B stage-1 step's products (Llama-2-7B, ViT-L/14-336; 16 samples of 641 tokens, 577 patches).
pub fn shapes(set: &str) -> anyhow::Result<Vec<Shape>> {
    let (t, v, heads, samples) = match set {
        "llava7b" => (16 * 641, 16 * 577, 16 * 32, 16),
        "small" => (96, 80, 4, 4),
        other => bail!("--shapes {other}: give llava7b or small"),
    };
    let (d, ff, vocab, seq, hd, vd, vff) = if set == "llava7b" { (4096, 11008, 32000, 641, 128, 1024, 4096) } else { (64, 96, 160, 24, 16, 32, 64) };
    Ok(vec![
        shape("llm q/k/v/o projection", 1, t, d, d, false),
        shape("llm gate/up projection", 1, t, d, ff, false),
        shape("llm down projection", 1, t, ff, d, false),
        shape("llm down projection, backward to its input", 1, t, d, ff, true),
        shape("lm head", 1, t, d, vocab, false),
        shape("attention q k^T", heads, seq, hd, seq, true),
        shape("attention p v", heads, seq, seq, hd, false),
        shape("vision mlp up", 1, v, vd, vff, false),
        Shape { rhs_broadcast: true, ..shape("llm gate/up projection with the weight broadcast over samples", samples, t / samples, d, ff, false) },
    ])
}

fn dtype(name: &str) -> anyhow::Result<DType> {
    Ok(match name {
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        "f32" => DType::F32,
        other => bail!("--dtype {other}: give bf16, f16 or f32"),
    })
}

/// What one shape measured on our side.
struct Measured {
    ms: f64,
    /// Largest |ours - f64 reference| over the sampled entries, as a fraction of the error allowed
    /// there ([`allowed_error`]): over 1 is a wrong product.
    worst_error: f64,
    /// The worst entry, said in words, when it is over what is allowed.
    wrong: Option<String>,
}

/// The error allowed at an entry whose f64 value is `want` and whose sum of |a_i b_i| is `scale`:
/// the output's rounding (bf16 keeps 8 significant bits: 2^-8 of the value covers it, and f16 and
/// f32 round finer) and the products' and accumulation's rounding, 2^-11 of `scale` (bf16 products
/// are exact in f32 and CubeCL accumulates bf16 in f32; TF32 rounds each f32 input to 11
/// significant bits, and those errors, of random sign, add up to far less than 2^-11 of `scale`).
/// A wrong index or a value off by a few percent is several times over it (a product 3% off
/// failed the check on all nine shapes).
fn allowed_error(want: f64, scale: f64) -> f64 {
    want.abs() / 256.0 + scale / 2048.0
}

struct Job {
    shapes: Vec<Shape>,
    dtype: DType,
    iters: usize,
    warmup: usize,
    kernels: Vec<String>,
}

/// One shape's measurements: burn's own product, then each named kernel (`Err`: it did not run).
type ShapeResult = (Measured, Vec<Result<Measured, String>>);

impl BackendJob for Job {
    type Output = Vec<ShapeResult>;
    fn run<B: BurnBackend>(self, device: B::Device) -> anyhow::Result<Vec<ShapeResult>> {
        B::seed(&device, 0);
        let mut results = Vec::new();
        for s in &self.shapes {
            let uniform = Distribution::Uniform(-1.0, 1.0);
            let a = Tensor::<B, 3>::random([s.batch, s.m, s.k], uniform, &device).cast(self.dtype);
            let b_batch = if s.rhs_broadcast { 1 } else { s.batch };
            let b_stored = if s.rhs_transposed { [b_batch, s.n, s.k] } else { [b_batch, s.k, s.n] };
            let b = Tensor::<B, 3>::random(b_stored, uniform, &device).cast(self.dtype);
            // The right operand as the product sees it: `[b, k, n]`, a transposed view where stored `[b, n, k]`.
            let rhs = if s.rhs_transposed { b.clone().swap_dims(1, 2) } else { b.clone() };
            let burn = measure::<B>(s, &a, &rhs, || Ok(a.clone().matmul(rhs.clone())), self.iters, self.warmup, &device)?;
            let mut kernels = Vec::new();
            for name in &self.kernels {
                let run = || match name.as_str() {
                    CUBLAS => anchorage_kernels::gemm::cublas_matmul(&a, &rhs).unwrap_or_else(|| Err("cuBLAS runs on burn's CUDA backend only".to_string())),
                    _ => anchorage_kernels::matmul_kernels::matmul_with(&a, &rhs, name).unwrap_or_else(|| Err("not a CubeCL backend (wgpu or cuda)".to_string())),
                };
                // A kernel that cannot run fails at its first call, the checked one: said, not timed.
                kernels.push(measure::<B>(s, &a, &rhs, run, self.iters, self.warmup, &device).map_err(|e| format!("{e:#}")));
            }
            results.push((burn, kernels));
        }
        Ok(results)
    }
}

/// Checks `product` of `a [batch, m, k]` and `rhs [batch, k, n]` (a transposed view where
/// `s.rhs_transposed`) at 16 sampled entries, then times it.
fn measure<B: BurnBackend>(
    s: &Shape,
    a: &Tensor<B, 3>,
    rhs: &Tensor<B, 3>,
    product: impl Fn() -> Result<Tensor<B, 3>, String>,
    iters: usize,
    warmup: usize,
    device: &B::Device,
) -> anyhow::Result<Measured> {
    let product = || product().map_err(anyhow::Error::msg);
    // Checked first: 16 sampled entries (the corners among them) against f64 dot products.
    let c = product()?;
    let mut worst: f64 = 0.0;
    let mut wrong = None;
    for i in 0..16usize {
        let (bi, row, col) = match i {
            0 => (0, 0, 0),
            1 => (s.batch - 1, s.m - 1, s.n - 1),
            _ => ((i * 7919) % s.batch, (i * 104_729) % s.m, (i * 1_299_709) % s.n),
        };
        let a_row = floats(a.clone().slice([bi..bi + 1, row..row + 1, 0..s.k]))?;
        let rb = if s.rhs_broadcast { 0 } else { bi };
        let b_col = floats(rhs.clone().slice([rb..rb + 1, 0..s.k, col..col + 1]))?;
        let got = floats(c.clone().slice([bi..bi + 1, row..row + 1, col..col + 1]))?[0] as f64;
        let (want, scale) = a_row.iter().zip(&b_col).fold((0f64, 0f64), |(w, sc), (x, y)| (w + *x as f64 * *y as f64, sc + (*x as f64 * *y as f64).abs()));
        let error = (got - want).abs() / allowed_error(want, scale).max(f64::MIN_POSITIVE);
        let error = if error.is_nan() { f64::INFINITY } else { error };
        if error > worst {
            worst = error;
            if error > 1.0 {
                wrong = Some(format!("entry [{bi}, {row}, {col}] is {got}, the f64 dot product of its row and column {want} (allowed error {:.3e})", allowed_error(want, scale)));
            }
        }
    }
    drop(c);

    for _ in 0..warmup {
        drop(product()?);
    }
    B::sync(device).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let start = Instant::now();
    for _ in 0..iters {
        drop(product()?);
    }
    B::sync(device).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Measured { ms: start.elapsed().as_secs_f64() * 1e3 / iters as f64, worst_error: worst, wrong })
}

fn floats<B: BurnBackend>(t: Tensor<B, 3>) -> anyhow::Result<Vec<f32>> {
    t.cast(DType::F32).into_data().to_vec::<f32>().map_err(|e| anyhow::anyhow!("reading a product back: {e:?}"))
}

/// PyTorch's milliseconds per shape name, from the script's JSON lines.
fn torch_times(args: &MatmulArgs, python: &str) -> anyhow::Result<HashMap<String, f64>> {
    let device = match args.backend {
        Backend::Cuda => "cuda",
        _ => "cpu",
    };
    let out = Command::new(python)
        .arg(&args.torch_script)
        .args(["--device", device, "--dtype", &args.dtype, "--shapes", &args.shapes])
        .args(["--iters", &args.iters.to_string(), "--warmup", &args.warmup.to_string()])
        .output()
        .with_context(|| format!("running {python} {}", args.torch_script.display()))?;
    if !out.status.success() {
        bail!("{python} {} failed ({}): {}", args.torch_script.display(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["name"].as_str()?.to_string(), v["ms"].as_f64()?)))
        .collect())
}

pub fn run(args: MatmulArgs) -> anyhow::Result<()> {
    if args.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let shapes = shapes(&args.shapes)?;
    if args.list {
        let list: Vec<_> = shapes.iter().map(|s| serde_json::json!([s.name, s.batch, s.m, s.k, s.n, s.rhs_transposed, s.rhs_broadcast])).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let dtype = dtype(&args.dtype)?;
    let kernels: Vec<String> = if args.kernels.iter().any(|k| k == "all") {
        anchorage_kernels::matmul_kernels::MATMUL_KERNELS.iter().chain(&[CUBLAS]).map(|k| k.to_string()).collect()
    } else {
        args.kernels.clone()
    };
    if !kernels.is_empty() && !matches!(args.backend, Backend::Cuda | Backend::Wgpu) {
        bail!("--kernels chooses among CubeCL's matmul kernels: give --backend cuda or wgpu");
    }
    let job = Job { shapes: shapes.clone(), dtype, iters: args.iters, warmup: args.warmup, kernels: kernels.clone() };
    let results = crate::backend::on_backend(args.backend, args.device, job)?;
    let ours: Vec<&Measured> = results.iter().map(|(burn, _)| burn).collect();
    let torch = match &args.torch_python {
        Some(python) => Some(torch_times(&args, python)?),
        None => None,
    };
    let rows: Vec<serde_json::Value> = shapes
        .iter()
        .zip(&ours)
        .enumerate()
        .map(|(i, (s, m))| {
            let tflops = s.flops() / (m.ms * 1e-3) / 1e12;
            let torch_ms = torch.as_ref().and_then(|t| t.get(s.name).copied());
            let by_kernel: serde_json::Map<String, serde_json::Value> = kernels
                .iter()
                .zip(&results[i].1)
                .map(|(name, r)| {
                    let v = match r {
                        Ok(k) => serde_json::json!({
                            "ms": k.ms,
                            "tflops": s.flops() / (k.ms * 1e-3) / 1e12,
                            "worst_error": k.worst_error,
                            "wrong": k.wrong,
                        }),
                        Err(e) => serde_json::json!({ "error": e }),
                    };
                    (name.clone(), v)
                })
                .collect();
            serde_json::json!({
                "name": s.name,
                "batch": s.batch, "m": s.m, "k": s.k, "n": s.n, "rhs_transposed": s.rhs_transposed, "rhs_broadcast": s.rhs_broadcast,
                "ms": m.ms,
                "tflops": tflops,
                "peak_share": args.peak_tflops.map(|p| tflops / p),
                "worst_error": m.worst_error,
                "torch_ms": torch_ms,
                "torch_tflops": torch_ms.map(|t| s.flops() / (t * 1e-3) / 1e12),
                "ours_over_torch": torch_ms.map(|t| m.ms / t),
                "kernels": by_kernel,
            })
        })
        .collect();
    let total_flops: f64 = shapes.iter().map(Shape::flops).sum();
    let total_ms: f64 = ours.iter().map(|m| m.ms).sum();
    let torch_total_ms: Option<f64> = torch.as_ref().and_then(|t| shapes.iter().map(|s| t.get(s.name).copied()).sum());
    println!(
        "{}",
        serde_json::json!({
            "bench": "matmul",
            "backend": crate::backend::name(args.backend),
            "dtype": args.dtype,
            "shapes": args.shapes,
            "iters": args.iters,
            "checked_entries": 16 * shapes.len(),
            "tflops": total_flops / (total_ms * 1e-3) / 1e12,
            "torch_tflops": torch_total_ms.map(|t| total_flops / (t * 1e-3) / 1e12),
            "ours_over_torch": torch_total_ms.map(|t| total_ms / t),
            "products": rows,
        })
    );
    // Timed and printed either way, then refused: a fast wrong product is no result.
    // burn's products only: a named kernel that computes wrong is reported in its entry, as the
    // answer to "can this kernel be used", not as a failure of the bench.
    let wrong: Vec<String> = shapes.iter().zip(&ours).filter_map(|(s, m)| m.wrong.as_ref().map(|w| format!("{}: {w}", s.name))).collect();
    if !wrong.is_empty() {
        bail!("wrong products (checked against f64 dot products of the same inputs):\n  {}", wrong.join("\n  "));
    }
    Ok(())
}
