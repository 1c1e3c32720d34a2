//! Kernel vs reference twin vs PyTorch (AcFormer's host loop), side by side in one run.
//!
//! GPU (see kernels/README.md): build on the CPU machine with
//! `cargo bench -p anchorage-kernels --features cuda --bench anchor_gather --no-run`, then run the
//! printed executable on the GPU machine:
//! `anchor_gather-<hash> --backend cuda --sizes real --acformer-python python3 --peak-gbs <HBM GB/s>`.
//! CPU proof run (lavapipe): `cargo bench -p anchorage-kernels --features wgpu --bench anchor_gather -- --sizes small`.
//!
//! Every number is a mean over `--iters` calls after `--warmup` calls (the first compiles the
//! kernels), with a device sync before and after the timed loop. Bandwidth counts the bytes an
//! op must move at least (scores read once, gathered rows read and written once, indices written).

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use anchorage_kernels::{anchor, gather_tokens, runs_kernels, select_anchors, topk, topk_gather_rows};
use burn::tensor::{backend::Backend, Distribution, Int, Tensor};

struct Args {
    backend: String,
    real: bool,
    iters: usize,
    warmup: usize,
    python: Option<String>,
    script: String,
    python_device: Option<String>,
    /// Seconds after which the PyTorch script starts no further host-loop case (0: no limit).
    python_budget_s: f64,
    peak_gbs: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        backend: if cfg!(feature = "cuda") { "cuda" } else { "wgpu" }.to_string(),
        real: false,
        iters: 10,
        warmup: 2,
        python: None,
        script: concat!(env!("CARGO_MANIFEST_DIR"), "/benches/acformer_host_loop.py").to_string(),
        python_device: None,
        python_budget_s: 30.0,
        peak_gbs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bench" => {} // cargo bench passes it to harness = false targets
            "--backend" => args.backend = value()?,
            "--sizes" => args.real = value()? == "real",
            "--iters" => args.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--acformer-python" => args.python = Some(value()?),
            "--acformer-script" => args.script = value()?,
            "--python-device" => args.python_device = Some(value()?),
            "--acformer-budget-s" => args.python_budget_s = value()?.parse().map_err(|e| format!("--acformer-budget-s: {e}"))?,
            "--peak-gbs" => args.peak_gbs = Some(value()?.parse().map_err(|e| format!("--peak-gbs: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Mean milliseconds per call of `f`.
fn time_ms<B: Backend, T>(device: &B::Device, warmup: usize, iters: usize, mut f: impl FnMut() -> T) -> f64 {
    for _ in 0..warmup {
        drop(f());
    }
    B::sync(device).expect("sync");
    let start = Instant::now();
    for _ in 0..iters {
        drop(f());
    }
    B::sync(device).expect("sync");
    start.elapsed().as_secs_f64() * 1e3 / iters as f64
}

/// PyTorch column: `{op}/{batch}/{n}` -> ms, from the script's JSON lines.
fn pytorch_times(args: &Args) -> HashMap<String, f64> {
    let Some(python) = &args.python else { return HashMap::new() };
    let device = args.python_device.clone().unwrap_or_else(|| if args.backend == "cuda" { "cuda" } else { "cpu" }.to_string());
    let sizes = if args.real { "real" } else { "small" };
    eprintln!("running {python} {} --device {device} --sizes {sizes}", args.script);
    let out = Command::new(python)
        .args([args.script.as_str(), "--device", &device, "--sizes", sizes, "--iters", &args.iters.min(5).to_string()])
        .args(["--budget-s", &args.python_budget_s.to_string()])
        .output()
        .expect("run the PyTorch script");
    if !out.status.success() {
        eprintln!("PyTorch script failed: {}", String::from_utf8_lossy(&out.stderr));
        return HashMap::new();
    }
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((format!("{}/{}/{}", v["op"].as_str()?, v["batch"].as_u64()?, v["n"].as_u64()?), v["ms"].as_f64()?)))
        .collect()
}

struct Row<'a> {
    op: &'a str,
    batch: usize,
    n: usize,
    kernel_ms: f64,
    reference_ms: f64,
    bytes: f64,
}

fn print_row(row: &Row, py: &HashMap<String, f64>, peak: Option<f64>) {
    let gbs = |ms: f64| row.bytes / (ms * 1e-3) / 1e9;
    let (py_ms, py_ratio) = match py.get(&format!("{}/{}/{}", row.op, row.batch, row.n)) {
        Some(ms) => (format!("{ms:.3}"), format!("{:.1}x", ms / row.kernel_ms)),
        None => ("-".into(), "-".into()),
    };
    let pct = peak.map(|p| format!("{:.0}%", 100.0 * gbs(row.kernel_ms) / p)).unwrap_or_else(|| "-".into());
    println!(
        "| {} | {} | {} | {:.3} | {:.3} | {:.1}x | {} | {} | {:.1} | {:.1} | {} |",
        row.op,
        row.batch,
        row.n,
        row.kernel_ms,
        row.reference_ms,
        row.reference_ms / row.kernel_ms,
        py_ms,
        py_ratio,
        gbs(row.kernel_ms),
        gbs(row.reference_ms),
        pct
    );
}

fn index_vec<B: Backend, const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec::<i64>().expect("int data")
}

fn run<B: Backend>(args: &Args) {
    let device = B::Device::default();
    B::seed(&device, 0);
    let py = pytorch_times(args);
    let (anchor_cases, width): (Vec<(usize, usize)>, usize) = if args.real {
        ([32, 64, 128, 256].into_iter().flat_map(|b| [(b, 144), (b, 256)]).collect(), 1024)
    } else {
        (vec![(2, 144), (2, 256)], 64)
    };
    let (heads, tokens) = (16, 577);
    let (kv_cases, kv_heads, length, head_dim): (Vec<(usize, usize)>, usize, usize, usize) = if args.real {
        ([32, 64, 128, 256].into_iter().flat_map(|b| [(b, 512), (b, 1024)]).collect(), 32, 2048, 128)
    } else {
        (vec![(1, 64)], 4, 256, 128)
    };

    let probe = Tensor::<B, 1>::zeros([1], &device);
    println!("backend: {} ({}); kernels used: {}", args.backend, B::name(&device), runs_kernels(&probe));
    println!("| op | B | N or k | kernel ms | reference ms | ref/kernel | pytorch ms | pytorch/kernel | kernel GB/s | reference GB/s | kernel % of peak |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let (w, i) = (args.warmup, args.iters);
    for &(batch, n) in &anchor_cases {
        let att = Tensor::<B, 3>::random([batch, heads, tokens], Distribution::Uniform(0.0, 1.0), &device);
        let feats = Tensor::<B, 3>::random([batch, tokens, width], Distribution::Uniform(0.0, 1.0), &device);
        let idx_k = select_anchors(att.clone(), n).expect("select");
        let idx_r = anchor::reference::select_anchors(att.clone(), n).expect("select");
        assert_eq!(index_vec(idx_k.clone()), index_vec(idx_r), "kernel and reference anchors differ (B={batch}, N={n})");
        let select_bytes = (batch * heads * tokens * 4 + batch * (n + 1) * 4) as f64;
        let gather_bytes = (2 * batch * (n + 1) * width * 4 + batch * (n + 1) * 4) as f64;
        let select = Row {
            op: "anchor_select",
            batch,
            n,
            kernel_ms: time_ms::<B, _>(&device, w, i, || select_anchors(att.clone(), n)),
            reference_ms: time_ms::<B, _>(&device, w, i, || anchor::reference::select_anchors(att.clone(), n)),
            bytes: select_bytes,
        };
        print_row(&select, &py, args.peak_gbs);
        let gather = Row {
            op: "anchor_gather",
            batch,
            n,
            kernel_ms: time_ms::<B, _>(&device, w, i, || gather_tokens(feats.clone(), idx_k.clone())),
            reference_ms: time_ms::<B, _>(&device, w, i, || anchor::reference::gather_tokens(feats.clone(), idx_k.clone())),
            bytes: gather_bytes,
        };
        print_row(&gather, &py, args.peak_gbs);
        let both = Row {
            op: "anchor_select_gather",
            batch,
            n,
            kernel_ms: time_ms::<B, _>(&device, w, i, || gather_tokens(feats.clone(), select_anchors(att.clone(), n).expect("select"))),
            reference_ms: time_ms::<B, _>(&device, w, i, || {
                let idx: Tensor<B, 2, Int> = anchor::reference::select_anchors(att.clone(), n).expect("select");
                anchor::reference::gather_tokens(feats.clone(), idx)
            }),
            bytes: select_bytes + gather_bytes,
        };
        print_row(&both, &py, args.peak_gbs);
    }
    for &(batch, k) in &kv_cases {
        let scores = Tensor::<B, 3>::random([batch, kv_heads, length], Distribution::Uniform(0.0, 1.0), &device);
        let rows = Tensor::<B, 4>::random([batch, kv_heads, length, head_dim], Distribution::Uniform(0.0, 1.0), &device);
        let (_, idx_k) = topk_gather_rows(scores.clone(), rows.clone(), k).expect("topk");
        let (_, idx_r) = topk::reference::topk_gather_rows(scores.clone(), rows.clone(), k).expect("topk");
        assert_eq!(index_vec(idx_k), index_vec(idx_r), "kernel and reference top-k differ (B={batch}, k={k})");
        let row = Row {
            op: "kv_topk_gather",
            batch,
            n: k,
            kernel_ms: time_ms::<B, _>(&device, w, i, || topk_gather_rows(scores.clone(), rows.clone(), k)),
            reference_ms: time_ms::<B, _>(&device, w, i, || topk::reference::topk_gather_rows(scores.clone(), rows.clone(), k)),
            bytes: (batch * kv_heads * length * 4 + 2 * batch * kv_heads * k * head_dim * 4 + batch * kv_heads * k * 4) as f64,
        };
        print_row(&row, &py, args.peak_gbs);
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: anchor_gather [--backend cuda|wgpu] [--sizes small|real] [--iters N] [--warmup N] [--acformer-python PYTHON] [--acformer-script PATH] [--python-device cuda|cpu] [--acformer-budget-s S] [--peak-gbs GB/s]");
            std::process::exit(2);
        }
    };
    match args.backend.as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => run::<burn::backend::Cuda>(&args),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<burn::backend::Wgpu>(&args),
        "flex" => run::<burn::backend::Flex>(&args),
        other => {
            eprintln!("backend {other} is not compiled in (features: cuda, wgpu); flex runs the reference only");
            std::process::exit(2);
        }
    }
}
