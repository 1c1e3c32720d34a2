//! The trainer and the evaluation on a CubeCL backend, against flex. CUDA runs on burn's CubeCL
//! backend (`burn-cubecl`), and CI has no GPU; wgpu is the same backend code over another
//! compiler, and CI runs it on Mesa's lavapipe (a Vulkan driver on the CPU). So every burn op the
//! model, the connectors, the compression hooks and the optimizer use on a GPU runs here: a
//! missing op, a dtype the CPU backend forgives, a host-side assumption would fail here first.
//!
//! `train bench parity` does the comparing (stage-2 runs from the same connector file and tower
//! folders, so both backends begin from the same weights; their losses, the second of which
//! reflects the first update, agree to float rounding; evaluation gives flex's greedy answers), and
//! this test reads the files it compared once more.

/// `--backend` refuses a backend this binary was not built with, naming the feature, before
/// anything is read.
#[cfg(not(feature = "cuda"))]
#[test]
fn evaluating_on_a_backend_this_binary_lacks_is_refused_by_name() {
    use super::common::{text, train};
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers.jsonl");
    let args = ["eval", "run", "no-such-run", "--question-file", "q.jsonl", "--image-folder", ".", "--answers-file", answers.to_str().unwrap()];
    let out = train(&[&args[..], &["--backend", "cuda"]].concat());
    assert!(!out.status.success() && text(&out).contains("--features cuda"), "{}", text(&out));
    let out = train(&[&args[..], &["--backend", "tpu"]].concat());
    assert!(!out.status.success() && text(&out).contains("unknown backend `tpu`"), "{}", text(&out));
    // cuBLAS is CUDA's: refused on the CPU before anything opens.
    let out = train(&[&args[..], &["--backend", "flex", "--matmul", "cublas"]].concat());
    assert!(!out.status.success() && text(&out).contains("--matmul cublas runs on the cuda backend only"), "{}", text(&out));
    let out = train(&[&args[..], &["--matmul", "fast"]].concat());
    assert!(!out.status.success() && text(&out).contains("unknown matmul engine `fast`"), "{}", text(&out));
    assert!(!answers.exists());
}

#[cfg(feature = "wgpu")]
mod on_wgpu {
    use std::path::Path;

    use super::super::common::text;

    /// The losses a run logged, in step order.
    fn losses(run: &Path) -> Vec<f64> {
        anchorage_train::metrics::MetricsLog::read(&run.join("metrics.jsonl")).unwrap().into_iter().map(|m| m.loss).collect()
    }

    /// Greedy answers of an answers file, in order.
    fn answers(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect()
    }

    /// `--matmul cublas` is CUDA's: refused by `train bench parity` on wgpu before any world is made.
    #[test]
    fn bench_parity_refuses_cublas_off_cuda() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("parity");
        let out = super::super::common::train(&["bench", "parity", "--backend", "wgpu", "--matmul", "cublas", "--keep", keep.to_str().unwrap()]);
        assert!(!out.status.success() && text(&out).contains("--matmul cublas runs on the cuda backend only"), "{}", text(&out));
        assert!(!keep.exists(), "nothing made");
        let out = super::super::common::train(&["bench", "parity", "--backend", "wgpu", "--matmul", "fast"]);
        assert!(!out.status.success() && text(&out).contains("unknown matmul engine `fast`: burn or cublas"), "{}", text(&out));
    }

    /// `train bench parity --backend wgpu` passes, and the files it compared agree when read
    /// here: stage 2 of every connector, ACT and balanced checkpointing (the LLM trained in full)
    /// gives flex's losses, and a run answers the world's questions alike on both backends.
    #[test]
    fn stage_two_trains_and_evaluates_on_wgpu_as_on_flex() {
        if !crate::wgpu_support::wgpu_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("parity");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
            .args(["bench", "parity", "--backend", "wgpu", "--tolerance", "1e-4", "--keep", keep.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with('{')).expect("a JSON line");
        let report: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["runs"].as_array().unwrap().len(), 5, "{report}");
        assert!(report["weights_rel_diff"].as_f64().unwrap() <= 0.1, "{report}");

        for i in 0..5 {
            let (flex, wgpu) = (losses(&keep.join(format!("runs/{i}-flex"))), losses(&keep.join(format!("runs/{i}-wgpu"))));
            assert_eq!(flex.len(), 3, "run {i}: {flex:?}");
            for (a, b) in flex.iter().zip(&wgpu) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "run {i}: flex {flex:?} against wgpu {wgpu:?}");
            }
        }
        let (flex, wgpu) = (answers(&keep.join("answers-flex.jsonl")), answers(&keep.join("answers-wgpu.jsonl")));
        assert_eq!(flex.len(), 16, "4 images, 4 questions each");
        assert_eq!(flex, wgpu);

        // A run's default backend is the one it was trained on.
        let demo = keep.join("demo");
        let (questions, images) = (demo.join("world/eval/questions.jsonl"), demo.join("world/images"));
        let answer = |run: &Path, file: &Path| {
            let args = [
                "eval", "run", run.to_str().unwrap(), "--question-file", questions.to_str().unwrap(), "--image-folder", images.to_str().unwrap(), "--answers-file",
                file.to_str().unwrap(), "--max-new-tokens", "2",
            ];
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_train")).args(args).env("RUST_LOG", "info").output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let log = answer(&demo.join("runs/anchor_former"), &dir.path().join("a.jsonl"));
        assert!(log.contains("backend=\"flex\""), "a flex-trained run is evaluated on flex by default: {log}");
        let log = answer(&keep.join("runs/3-wgpu"), &dir.path().join("b.jsonl"));
        assert!(log.contains("backend=\"wgpu\""), "a wgpu-trained run is evaluated on wgpu by default: {log}");
    }

    /// `train bench matmul --kernels` launches CubeCL's own matmul kernels beside burn's product,
    /// checks each one's entries as it checks burn's, and says in words why one cannot run here
    /// (lavapipe has no matrix units, so the CMMA/MMA kernels find no tile size; cuBLAS runs on
    /// CUDA only).
    #[test]
    fn bench_matmul_checks_and_times_cubecl_kernels_beside_burns() {
        if !crate::wgpu_support::wgpu_available() {
            return;
        }
        let out = super::super::common::train(&[
            "bench", "matmul", "--backend", "wgpu", "--dtype", "f32", "--shapes", "small", "--iters", "1", "--warmup", "0",
            "--kernels", "auto,simple_unit,simple_cyclic_cmma,no_such_kernel,cublas",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        let j: serde_json::Value = serde_json::from_str(t.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
        let products = j["products"].as_array().unwrap();
        assert_eq!(products.len(), 9, "{j}");
        for p in products {
            for name in ["auto", "simple_unit"] {
                let k = &p["kernels"][name];
                let worst = k["worst_error"].as_f64().unwrap_or_else(|| panic!("{name} did not run: {p}"));
                assert!(worst < 0.05 && k["wrong"].is_null() && k["tflops"].as_f64().unwrap() > 0.0, "{name}: {p}");
            }
            let cmma = &p["kernels"]["simple_cyclic_cmma"];
            assert!(cmma["worst_error"].as_f64().is_some_and(|w| w < 0.05) || cmma["error"].as_str().is_some_and(|e| !e.is_empty()), "{p}");
            assert!(p["kernels"]["no_such_kernel"]["error"].as_str().unwrap().contains("unknown kernel no_such_kernel"), "{p}");
            assert!(p["kernels"]["cublas"]["error"].as_str().unwrap().contains("CUDA backend only"), "{p}");
        }
        let out = super::super::common::train(&["bench", "matmul", "--backend", "flex", "--shapes", "small", "--kernels", "auto"]);
        assert!(!out.status.success() && text(&out).contains("give --backend cuda or wgpu"), "{}", text(&out));
    }

    /// A tower dtype the wgpu device cannot compute in (bf16: WGSL has none) is refused by its
    /// recipe key before anything is built or written, where CubeCL's compiler used to panic at the
    /// first kernel (exit 101).
    #[test]
    fn bf16_on_wgpu_is_refused_by_key() {
        if !crate::wgpu_support::wgpu_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sets = ["devices.backend=\"wgpu\"", "llm.dtype=\"bf16\""];
        let args = super::super::common::stage_args("pretrain", "recipes/tiny/pretrain.toml", dir.path(), "bf16", &sets, &[]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_train")).args(&args).env("RUST_LOG", "warn").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let err = text(&out);
        assert!(err.contains("`llm.dtype`: \"bf16\" is not supported by this backend's device (") && err.contains("wgpu<"), "{err}");
        assert!(err.contains("use \"f16\" or \"f32\"") || err.contains("use \"f32\""), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a refused run writes nothing");
    }

    /// `llm.recompute_attention`: on (the default), a training forward of the LLM on wgpu holds
    /// almost nothing score-sized until the backward pass; off, burn's recorded attention holds
    /// about three `[batch, heads, len, len]` tensors per layer. The forward values are the same,
    /// the gradients equal to float rounding.
    #[test]
    fn recomputed_attention_is_a_switch_that_keeps_the_values_and_frees_the_scores() {
        use anchorage_kernels::device_memory::bytes_in_use;
        use anchorage_llm::{LlamaConfig, LlmInput, NoHooks};
        use burn::backend::{Autodiff, Wgpu};
        use burn::tensor::backend::Backend;
        use burn::tensor::{Distribution, Tensor};
        type A = Autodiff<Wgpu>;

        let device = Default::default();
        let config = LlamaConfig::tiny();
        let (batch, len) = (2, 256);
        <A as Backend>::seed(&device, 5);
        // Drawn now (burn draws lazily, at first use): both runs then share the weights.
        let llm = anchorage_model::materialize(config.init::<A>(&device));
        let embeds = Tensor::<A, 3>::random([batch, len, config.hidden_size], Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<A, 3>::random([batch, len, config.hidden_size], Distribution::Normal(0.0, 1.0), &device);
        let run = |recompute: bool| {
            let llm = llm.clone().with_recomputed_attention(recompute);
            let mut last = None;
            // The second pass counts: the first also compiles kernels and fills the allocator's pools.
            for _ in 0..2 {
                let x = embeds.clone().require_grad();
                <Wgpu as Backend>::sync(&device).unwrap();
                let before = bytes_in_use::<Wgpu>(&device).expect("CubeCL's memory count on wgpu");
                let hidden = llm.forward_embeds(LlmInput::plain(x.clone()), &mut NoHooks).unwrap().hidden;
                <Wgpu as Backend>::sync(&device).unwrap();
                let held = bytes_in_use::<Wgpu>(&device).unwrap().saturating_sub(before);
                let values = hidden.clone().into_data().to_vec::<f32>().unwrap();
                let grads = (hidden * weights.clone()).sum().backward();
                let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
                last = Some((held, values, grad));
            }
            last.unwrap()
        };
        let (on, off) = (run(true), run(false));
        let score = (batch * config.num_attention_heads * len * len * 4) as u64;
        let layers = config.num_hidden_layers as u64;
        assert!(off.0 >= on.0 + 2 * layers * score, "held until the backward pass: {} bytes recomputing, {} recorded; one score tensor is {score}", on.0, off.0);
        let forward = on.1.iter().zip(&off.1).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let same = on.1.iter().zip(&off.1).filter(|(a, b)| a == b).count();
        assert!(forward == 0.0, "forward values differ by {forward} ({same} of {} identical)", on.1.len());
        let largest = off.2.iter().fold(0f32, |m, g| m.max(g.abs()));
        let diff = on.2.iter().zip(&off.2).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(largest > 0.0 && diff <= 1e-4 * largest, "input gradients differ by {diff} (largest {largest})");
    }
}
