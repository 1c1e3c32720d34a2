//! The `train` binary as a user meets it: help, dry runs and errors on bad recipes.

use crate::common;

use common::{text, train};

use std::path::Path;

/// Writes a copy of `recipe` with `edit` applied into a temp dir and returns its path.
fn edited(dir: &Path, recipe: &str, edit: impl Fn(String) -> String) -> String {
    let text = std::fs::read_to_string(recipe).unwrap();
    let path = dir.join("recipe.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn dry_run_of_anchor_former_pretrain_reports_steps_from_the_manifest() {
    let out = train(&["pretrain", "recipes/pretrain/anchor_former_145.toml", "--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("samples:             558128 (from the manifest"), "{t}");
    assert!(t.contains("optimizer steps:     2181"), "{t}");
    assert!(t.contains("warmup steps:        66"), "{t}");
    assert!(t.contains("grad accumulation:   1 = 256 / (32 × 8)"), "{t}");
    assert!(t.contains("kind = \"anchor_former\""), "resolved recipe printed: {t}");
}

#[test]
fn overrides_change_the_plan() {
    let out = train(&[
        "pretrain",
        "recipes/pretrain/anchor_former_145.toml",
        "--dry-run",
        "--set",
        "optim.micro_batch=8",
        "--set",
        "devices.ids=[0, 1]",
        "--set",
        "optim.epochs=2",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("grad accumulation:   16 = 256 / (8 × 2)"), "{t}");
    assert!(t.contains("optimizer steps:     4362"), "{t}");
    assert!(t.contains("warmup steps:        131"), "{t}");
}

#[test]
fn ift_dry_run_plans_the_665k_mix() {
    let out = train(&["ift", "recipes/ift/mlp2x_gelu.toml", "--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // ceil(665298 / 128) = 5198, ceil(0.03 × 5198) = 156.
    assert!(t.contains("optimizer steps:     5198"), "{t}");
    assert!(t.contains("warmup steps:        156"), "{t}");
}

#[test]
fn unknown_key_is_named_with_the_allowed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let r = edited(dir.path(), "recipes/pretrain/mlp2x_gelu.toml", |t| t.replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 1"));
    let out = train(&["pretrain", &r, "--dry-run"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("optim.learning_rate") && t.contains("unknown field") && t.contains("`warmup_ratio`"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn bad_enum_value_lists_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let r = edited(dir.path(), "recipes/pretrain/mlp2x_gelu.toml", |t| t.replace("kind = \"mlp\"", "kind = \"qformer\""));
    let out = train(&["pretrain", &r, "--dry-run"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("connector") && t.contains("qformer") && t.contains("anchor_former") && t.contains("c_abstractor"), "{t}");

    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "data.template=llama2"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("data.template") && t.contains("llama2") && t.contains("vicuna_v1"), "{t}");
}

#[test]
fn missing_files_are_named() {
    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "data.manifest=data-manifests/nope.toml"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("data.manifest") && t.contains("data-manifests/nope.toml"), "{t}");

    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "vision.model={ path = \"/no/such/clip\" }"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("vision.model.path") && t.contains("/no/such/clip"), "{t}");

    let out = train(&["pretrain", "recipes/no-such-recipe.toml", "--dry-run"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("recipes/no-such-recipe.toml"), "{t}");
}

#[test]
fn invalid_values_are_named() {
    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "optim.global_batch=100"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("optim.global_batch") && t.contains("32 × 8"), "{t}");

    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "llm.training=lora"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("llm.lora"), "{t}");

    // cuBLAS is a CUDA engine: on flex it is refused by key before anything runs.
    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "devices.backend=\"flex\"", "--set", "devices.matmul=\"cublas\""]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("devices.matmul") && t.contains("devices.backend = \"cuda\" only") && t.contains("\"flex\""), "{t}");

    let out = train(&["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run", "--set", "optim.lr=\"fast\""]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("optim.lr") && t.contains("invalid type"), "{t}");
}

#[test]
fn a_recipe_runs_only_under_its_own_stage() {
    let out = train(&["ift", "recipes/pretrain/mlp2x_gelu.toml", "--dry-run"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("run.stage") && t.contains("train pretrain"), "{t}");
}

#[test]
fn help_explains_every_option() {
    let t = text(&train(&["pretrain", "--help"]));
    for opt in ["--set", "--dry-run", "--resume", "RECIPE"] {
        assert!(t.contains(opt), "{opt} missing from: {t}");
    }
    let t = text(&train(&["--help"]));
    for cmd in ["pretrain", "ift", "inspect"] {
        assert!(t.contains(cmd), "{cmd} missing from: {t}");
    }
}

#[test]
fn ift_dry_run_reports_a_missing_stage_one_connector() {
    let out = train(&["ift", "recipes/ift/anchor_former_145.toml", "--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("connector init:      checkpoints/pretrain-anchor-former-145/connector.safetensors (not present yet"), "{t}");
}

#[test]
fn dry_run_checks_compression_layers_against_the_llm_before_loading_anything() {
    // The tiny built-in LLM has 2 layers: FastV after layer 2 cannot run.
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "compression.method=fastv", "--set", "compression.layer=2"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("compression.layer"), "{t}");
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "compression.method=fastv", "--set", "compression.layer=1"]);
    let t = text(&out);
    assert!(out.status.success() && t.contains("checked:") && t.contains("layers fit the LLM's 2"), "{t}");
}

#[test]
fn a_connector_export_of_another_kind_is_refused_by_name_in_the_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = train(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &format!("run.output_dir=\"{out}\""), "--set", "optim.max_steps=1"]);
    assert!(o.status.success(), "{}", text(&o));
    let export = dir.path().join("tiny-pretrain/connector.safetensors");
    let init = format!("connector.init=\"{}\"", export.display());
    let o = train(&["ift", "recipes/tiny/ift.toml", "--dry-run", "--set", "connector.kind=mlp", "--set", &init]);
    let t = text(&o);
    assert!(!o.status.success() && t.contains("holds a anchor_former connector") && t.contains("mlp"), "{t}");
}

/// open_flamingo's resampler has no projector: the dry run checks the LLM is as wide as the vision
/// tower (the tiny towers are both 64 wide) and says which widths differ otherwise.
#[test]
fn dry_run_checks_a_projectorless_resampler_against_the_llm_width() {
    let set = |extra: &[&str]| {
        let mut args = vec!["pretrain", "recipes/tiny/pretrain.toml", "--dry-run"];
        for s in ["connector.kind=resampler", "connector.variant=open_flamingo", "connector.projector_depth=0", "connector.num_latents=9"] {
            args.extend(["--set", s]);
        }
        for s in extra {
            args.extend(["--set", *s]);
        }
        train(&args)
    };
    let out = set(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("connector: vision width 64 → LLM width 64"), "{}", text(&out));
    let out = set(&["vision.model={builtin=\"clip_vit_l14_336\"}"]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("connector.projector_depth") && t.contains("1024") && t.contains("64"), "{t}");
    // LLaVA's projector types by name.
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "connector.kind=mlp", "--set", "connector.projector_type=mlp1x_gelu"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("projector_type = \"mlp1x_gelu\""), "resolved recipe printed: {}", text(&out));
}

/// Sizes that would overflow or ask for absurd allocations are refused by key before anything runs.
#[test]
fn absurd_sizes_are_refused_by_key_in_the_dry_run() {
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "optim.micro_batch=4611686018427387904", "--set", "devices.nodes=4"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("optim.micro_batch"), "{t}");
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "connector.depth=100000000"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("parameters"), "{t}");
}

/// A tokenizer that can produce ids past the LLM's embedding rows is refused before training.
#[test]
fn a_tokenizer_larger_than_the_llm_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut tok: serde_json::Value = serde_json::from_str(&std::fs::read_to_string("data-manifests/tiny/data/tokenizer.json").unwrap()).unwrap();
    let added = tok["added_tokens"].as_array_mut().unwrap();
    for i in 0..8 {
        added.push(serde_json::json!({"id": 1024 + i, "content": format!("<extra_{i}>"), "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
    }
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, tok.to_string()).unwrap();
    let set = format!("llm.tokenizer=\"{}\"", path.display());
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", &set]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("llm.tokenizer") && t.contains("1032 tokens") && t.contains("1024 rows"), "{t}");
}

/// `train bench prefill` runs every default policy in its own process and reports each one's
/// prefill against no compression: the pruning methods keep fewer keys/values and cost fewer FLOPs.
#[test]
fn bench_prefill_compares_the_compression_methods_side_by_side() {
    let out = train(&["bench", "prefill", "--image-size", "48", "--layers", "10", "--hidden", "128", "--text-len", "16", "--repeats", "1"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("144 visual tokens"), "{t}");
    let rows: Vec<Vec<&str>> = t.lines().filter(|l| l.starts_with("| `")).map(|l| l.split('|').map(str::trim).collect()).collect();
    assert_eq!(rows.len(), 4, "{t}");
    let gflops = |r: &Vec<&str>| r[5].trim_end_matches('x').parse::<f64>().unwrap();
    let kept = |r: &Vec<&str>| r[3].parse::<f64>().unwrap();
    assert_eq!(kept(&rows[0]), 161.0, "no compression keeps all 1 + 144 + 16 tokens: {t}");
    for r in &rows[1..] {
        assert!(kept(r) < kept(&rows[0]) && gflops(r) < gflops(&rows[0]), "{t}");
    }
}

/// `train bench matmul` checks each product of the step against f64 dot products, times it, and
/// puts the PyTorch script's times beside ours (a stand-in script here: CI has no PyTorch).
#[test]
fn bench_matmul_checks_every_product_and_sets_pytorch_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let list = train(&["bench", "matmul", "--shapes", "small", "--list"]);
    assert!(list.status.success(), "{}", text(&list));
    let shapes: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<String> = shapes.as_array().unwrap().iter().map(|s| s[0].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 9);
    // The stand-in answers 2.5 ms for every product but the LM head's, which it leaves out.
    let script = dir.path().join("torch_stand_in.sh");
    let lines: String = names.iter().filter(|n| *n != "lm head").map(|n| format!("echo '{{\"name\": \"{n}\", \"ms\": 2.5}}'\n")).collect();
    std::fs::write(&script, format!("#!/bin/sh\ncase \"$*\" in *\"--device cpu --dtype f32 --shapes small --iters 2 --warmup 1\"*) ;; *) echo \"unexpected: $*\" >&2; exit 3 ;; esac\n{lines}")).unwrap();
    let out = train(&[
        "bench", "matmul", "--backend", "flex", "--dtype", "f32", "--shapes", "small", "--iters", "2", "--warmup", "1",
        "--torch-python", "sh", "--torch-script", script.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let j: serde_json::Value = serde_json::from_str(t.lines().rev().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(j["bench"], "matmul");
    assert_eq!(j["checked_entries"], 16 * 9);
    let products = j["products"].as_array().unwrap();
    assert_eq!(products.iter().map(|p| p["name"].as_str().unwrap()).collect::<Vec<_>>(), names);
    for p in products {
        // f32 on the CPU against f64: f32 rounding alone, a small fraction of what bf16 may have.
        assert!(p["worst_error"].as_f64().unwrap() < 0.05, "{p}");
        let (ms, tflops) = (p["ms"].as_f64().unwrap(), p["tflops"].as_f64().unwrap());
        let flops = 2.0 * ["batch", "m", "k", "n"].iter().map(|k| p[*k].as_f64().unwrap()).product::<f64>();
        assert!(ms > 0.0 && (tflops - flops / (ms * 1e-3) / 1e12).abs() <= 1e-9 * tflops, "{p}");
        if p["name"] == "lm head" {
            assert!(p["torch_ms"].is_null() && p["ours_over_torch"].is_null(), "{p}");
        } else {
            assert_eq!(p["torch_ms"].as_f64(), Some(2.5), "{p}");
            assert!((p["ours_over_torch"].as_f64().unwrap() - ms / 2.5).abs() < 1e-12, "{p}");
        }
    }
    // A product PyTorch did not time leaves the totals without a PyTorch side.
    assert!(j["torch_tflops"].is_null() && j["tflops"].as_f64().unwrap() > 0.0, "{j}");

    let out = train(&["bench", "matmul", "--backend", "flex", "--dtype", "f8"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("--dtype f8: give bf16, f16 or f32"), "{t}");
}

/// The PyTorch script times the same products as ours (its shapes are written out by hand).
#[test]
fn bench_matmul_shapes_are_the_pytorch_script_s() {
    for set in ["llava7b", "small"] {
        let ours = train(&["bench", "matmul", "--shapes", set, "--list"]);
        assert!(ours.status.success(), "{}", text(&ours));
        let theirs = std::process::Command::new("python3").args(["benches/matmul.py", "--list", "--shapes", set]).output().unwrap();
        assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
        let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
        let theirs: serde_json::Value = serde_json::from_slice(&theirs.stdout).unwrap();
        assert_eq!(ours, theirs, "{set}");
    }
}

/// A real run checks the data file and the connector export before it loads (or downloads) a tower:
/// the LLaVA recipes name Hub towers, and the error is about the data, not the Hub.
#[test]
fn a_run_reports_missing_data_and_init_before_touching_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--set", "devices.backend=flex", "--set", "devices.ids=[0]", "--set", "optim.micro_batch=128"];
    let out_dir = format!("run.output_dir=\"{}\"", dir.path().display());
    let mut args = vec!["pretrain", "recipes/pretrain/mlp2x_gelu.toml", "--set", "data.root=\"/no/such/data\"", "--set", &out_dir];
    args.extend(base);
    let out = train(&args);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("data.root") && t.contains("does not exist"), "{t}");
    assert!(!t.to_lowercase().contains("hub"), "{t}");
    let mut args = vec!["ift", "recipes/ift/mlp2x_gelu.toml", "--set", "data.root=\"data-manifests/tiny/data\"", "--set", "data.manifest=\"data-manifests/tiny/ift.toml\"", "--set", &out_dir];
    args.extend(base);
    let out = train(&args);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("connector.init") && t.contains("does not exist"), "{t}");
}

/// A folder given where a file goes, or a file where a folder goes, is named as such (not as missing).
#[test]
fn a_folder_for_a_file_and_a_file_for_a_folder_are_named() {
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "llm.tokenizer=\"recipes\""]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("llm.tokenizer") && t.contains("is a folder"), "{t}");
    let out = train(&["pretrain", "recipes/tiny/pretrain.toml", "--dry-run", "--set", "vision.model={ path = \"recipes/tiny/pretrain.toml\" }"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("vision.model.path") && t.contains("is a file"), "{t}");
}
