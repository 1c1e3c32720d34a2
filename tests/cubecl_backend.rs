//! The trainer and the evaluation on a CubeCL backend, against flex. CUDA runs on burn's CubeCL
//! backend (`burn-cubecl`), and CI has no GPU; wgpu is the same backend code over another
//! compiler, and CI runs it on Mesa's lavapipe (a Vulkan driver on the CPU). So every burn op the
//! model, the connectors, the compression hooks and the optimizer use on a GPU runs here: a
//! missing op, a dtype the CPU backend forgives, a host-side assumption would fail here first.
//!
//! Stage-2 runs start from the same connector file and the same tower folders, so both backends
//! begin from the same weights; their losses (the second reflects the first update) agree to float
//! rounding. Evaluation on wgpu gives flex's greedy answers.

use std::path::{Path, PathBuf};

use super::common::{stage_args, text, train, train_ok};

/// `--backend` refuses a backend this binary was not built with, naming the feature, before
/// anything is read.
#[cfg(not(feature = "cuda"))]
#[test]
fn evaluating_on_a_backend_this_binary_lacks_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers.jsonl");
    let args = ["eval", "run", "no-such-run", "--question-file", "q.jsonl", "--image-folder", ".", "--answers-file", answers.to_str().unwrap()];
    let out = train(&[&args[..], &["--backend", "cuda"]].concat());
    assert!(!out.status.success() && text(&out).contains("--features cuda"), "{}", text(&out));
    let out = train(&[&args[..], &["--backend", "tpu"]].concat());
    assert!(!out.status.success() && text(&out).contains("unknown backend `tpu`"), "{}", text(&out));
    assert!(!answers.exists());
}

#[cfg(feature = "wgpu")]
mod on_wgpu {
    use super::*;

    /// Whether a Vulkan driver is installed (lavapipe on a CPU machine); CI sets
    /// `ANCHORAGE_REQUIRE_WGPU=1`, which makes its absence a failure instead of a skip.
    fn vulkan_available() -> bool {
        let has_icd = std::env::var_os("VK_ICD_FILENAMES").is_some()
            || ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
                .iter()
                .any(|d| std::fs::read_dir(Path::new(d)).map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json"))).unwrap_or(false));
        if has_icd {
            return true;
        }
        if std::env::var_os("ANCHORAGE_REQUIRE_WGPU").is_some_and(|v| v == "1") {
            panic!("ANCHORAGE_REQUIRE_WGPU=1 but no Vulkan driver is installed (apt-get install mesa-vulkan-drivers)");
        }
        eprintln!("skipping the wgpu trainer test: no Vulkan driver (apt-get install mesa-vulkan-drivers to run it)");
        false
    }

    /// The losses a run logged, in step order.
    fn losses(run: &Path) -> Vec<f64> {
        let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter_map(|v| v["loss"].as_f64()).collect()
    }

    /// Greedy answers of an answers file, in order.
    fn answers(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn stage_two_trains_and_evaluates_on_wgpu_as_on_flex() {
        if !vulkan_available() {
            return;
        }
        // A demo world and towers of a few steps, and every connector's stage-1 connector.
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("demo");
        let args = [
            "demo", "--out", demo.to_str().unwrap(), "--connectors", "mlp2x_gelu,c_abstractor,resampler,anchor_former", "--compression", "none,act",
            "--train-images", "40", "--eval-images", "4", "--max-steps", "1", "--tower-steps", "3", "--llm", "curriculum=none,steps=3", "--replicas", "1",
        ];
        train_ok(&args.map(String::from));

        // Stage 2 (the LLM trained in full) on both backends, two steps. Anchor Former once more
        // with balanced checkpointing, as the LLaVA stage-2 recipes train.
        let runs: [(&str, &[&str]); 5] = [
            ("mlp2x_gelu-act", &[]),
            ("c_abstractor", &[]),
            ("resampler", &[]),
            ("anchor_former", &[]),
            ("anchor_former", &["llm.gradient_checkpointing=true"]),
        ];
        let out = dir.path().join("runs");
        for (i, (recipe, extra)) in runs.iter().enumerate() {
            let recipe = demo.join("recipes").join(format!("{recipe}.toml"));
            let mut per_backend = Vec::new();
            for backend in ["flex", "wgpu"] {
                let name = format!("{i}-{backend}");
                let b = format!("devices.backend=\"{backend}\"");
                let mut sets = vec![b.as_str(), "devices.ids=[0]", "optim.max_steps=2", "log.every_steps=1", "log.tensorboard=false"];
                sets.extend(extra.iter().copied());
                train_ok(&stage_args("ift", recipe.to_str().unwrap(), &out, &name, &sets, &[]));
                per_backend.push(losses(&out.join(&name)));
            }
            let (flex, wgpu) = (&per_backend[0], &per_backend[1]);
            assert_eq!(flex.len(), 2, "{recipe:?} {extra:?}: {flex:?}");
            for (a, b) in flex.iter().zip(wgpu) {
                assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{recipe:?} {extra:?}: flex {flex:?} against wgpu {wgpu:?}");
            }
        }

        // Evaluation: the flex-trained Anchor Former run answers the world's questions alike on
        // both backends; a run's default backend is the one it was trained on.
        let questions = demo.join("world/eval/questions.jsonl");
        let images = demo.join("world/images");
        let answer = |run: &Path, file: &Path, backend: Option<&str>| {
            let mut args: Vec<String> = ["eval", "run", run.to_str().unwrap(), "--question-file", questions.to_str().unwrap(), "--image-folder", images.to_str().unwrap(), "--answers-file", file.to_str().unwrap(), "--batch-size", "4", "--max-new-tokens", "6"]
                .map(String::from)
                .to_vec();
            if let Some(b) = backend {
                args.extend(["--backend".to_string(), b.to_string()]);
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_train")).args(&args).env("RUST_LOG", "info").output().unwrap();
            assert!(out.status.success(), "{}", text(&out));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let run = demo.join("runs/anchor_former");
        let files: Vec<PathBuf> = ["flex", "wgpu"].iter().map(|b| dir.path().join(format!("answers-{b}.jsonl"))).collect();
        let log = answer(&run, &files[0], None);
        assert!(log.contains("backend=\"flex\""), "a flex-trained run is evaluated on flex by default: {log}");
        answer(&run, &files[1], Some("wgpu"));
        let (flex, wgpu) = (answers(&files[0]), answers(&files[1]));
        assert_eq!(flex.len(), 16, "4 images, 4 questions each");
        assert_eq!(flex, wgpu);
        // The wgpu-trained run of the loop above goes back to wgpu.
        let log = answer(&out.join("3-wgpu"), &dir.path().join("answers-3.jsonl"), None);
        assert!(log.contains("backend=\"wgpu\""), "{log}");
    }
}
