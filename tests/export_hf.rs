//! `train export RUN --format hf-llava-full --out DIR [--merge-lora]`: a tiny fully fine-tuned
//! MLP run becomes a `LlavaForConditionalGeneration` folder whose weights are the run's, under the
//! keys transformers writes; transformers loads it with no missing or unexpected key and gives
//! anchorage's logits (tests/fixtures/export_hf/check.py, result committed in result.json); a LoRA
//! run needs --merge-lora and then holds base + (alpha/r)·B·A; another connector leaves the LLM,
//! the tower and the connector side by side; refused exports leave nothing behind.
//!
//! Regenerating the transformers check (after a change to the export or the tiny run):
//!   ANCHORAGE_WRITE_FIXTURES=1 cargo test --test integration -- export_hf::tiny_mlp export_hf::another_connector
//!   /path/to/python tests/fixtures/export_hf/check.py tests/fixtures/export_hf/work
//! (transformers 5.23, torch; `work/` is not committed, `result.json` is.)

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorage_data::image::load_pixel_values;
use anchorage_data::text::{question_ids, TextTokenizer};
use anchorage_model::run_dir::load_run;
use anchorage_model::Prompt;
use burn::backend::Flex;
use burn::tensor::TensorData;
use common::{text, train};
use serde_json::Value;

const FIXTURES: &str = "tests/fixtures/export_hf";
const IMAGE: &str = "data-manifests/tiny/data/images/img01.png";
const QUESTION: &str = "What color is the bottle?";

/// A tiny `ift` run (full fine-tuning of the LLM) with `connector` settings, `steps` steps.
fn tiny_run(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let sets = [&["optim.max_steps=2", "optim.lr=1e-2"][..], extra].concat();
    common::train_ok(&common::stage_args("ift", "recipes/tiny/ift.toml", dir, name, &sets, &[]));
    dir.join(name)
}

fn mlp_run(dir: &Path) -> PathBuf {
    tiny_run(dir, "tiny-mlp", &["connector.kind=\"mlp\"", "connector.depth=2", "vision.feature_select=\"patch\""])
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", run.to_str().unwrap(), "--format", "hf-llava-full", "--out", out.to_str().unwrap()];
    args.extend(extra);
    train(&args)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// `DIR/model.safetensors`.
fn tensors(dir: &Path) -> BTreeMap<String, TensorData> {
    anchorage_llm::read_tensors(&dir.join("model.safetensors")).unwrap()
}

fn f32s(d: &TensorData) -> Vec<f32> {
    d.clone().convert::<f32>().to_vec().unwrap()
}

/// Per tensor: shape, sum and sum of squares (f64), what result.json records of the export the
/// transformers check loaded.
fn stats(t: &BTreeMap<String, TensorData>) -> BTreeMap<String, (Vec<usize>, f64, f64)> {
    t.iter()
        .map(|(k, d)| {
            let v = f32s(d);
            (k.clone(), (d.shape.to_vec(), v.iter().map(|&x| f64::from(x)).sum(), v.iter().map(|&x| f64::from(x) * f64::from(x)).sum()))
        })
        .collect()
}

#[test]
fn tiny_mlp_run_exports_a_llava_folder_with_its_own_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let run = mlp_run(tmp.path());
    let out = tmp.path().join("hf");
    let o = export(&run, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("LlavaForConditionalGeneration") && text(&o).contains("<image> = 1024"), "{}", text(&o));
    for f in ["config.json", "model.safetensors", "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja", "README.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let config = json(&out.join("config.json"));
    assert_eq!(config["model_type"], "llava");
    assert_eq!(config["image_token_index"], 1024);
    assert_eq!(config["image_seq_length"], 64, "8x8 patches without CLS");
    assert_eq!(config["vision_feature_layer"], -2);
    assert_eq!(config["vision_feature_select_strategy"], "default");
    assert_eq!(config["text_config"]["vocab_size"], 1025, "one row appended for <image>");
    assert_eq!(config["vision_config"]["image_size"], 32);
    assert_eq!(json(&out.join("preprocessor_config.json"))["do_pad"], true, "the ift recipe pads to square");
    let tok = json(&out.join("tokenizer.json"));
    assert!(tok["added_tokens"].as_array().unwrap().iter().any(|t| t["content"] == "<image>" && t["id"] == 1024));

    // The weights are the run's: the tower, the trained connector and the trained LLM.
    let t = tensors(&out);
    let loaded = load_run::<Flex>(&run, &Default::default()).unwrap();
    let model = &loaded.built.model;
    let embed = f32s(&t["language_model.model.embed_tokens.weight"]);
    assert_eq!(t["language_model.model.embed_tokens.weight"].shape.to_vec(), vec![1025, 64]);
    assert_eq!(t["language_model.lm_head.weight"].shape.to_vec(), vec![1025, 64]);
    let own: Vec<f32> = model.llm().model.embed_tokens.weight.val().into_data().to_vec().unwrap();
    assert_eq!(&embed[..1024 * 64], own.as_slice(), "trained embeddings");
    assert!(embed[1024 * 64..].iter().all(|&x| x == 0.0), "the <image> row is zero");
    let l1: Vec<f32> = model.connector().export(anchorage_connectors::weights::Naming::HfLlava).unwrap().into_iter().find(|(k, _)| k == "multi_modal_projector.linear_1.weight").map(|(_, d)| f32s(&d)).unwrap();
    assert_eq!(f32s(&t["multi_modal_projector.linear_1.weight"]), l1);
    // burn's [in, out] Linear leaves as PyTorch's [out, in].
    let q: Vec<f32> = model.llm().model.layers[0].self_attn.q_proj.weight.val().transpose().into_data().to_vec().unwrap();
    assert_eq!(f32s(&t["language_model.model.layers.0.self_attn.q_proj.weight"]), q);
    assert!(t.contains_key("vision_tower.encoder.layers.3.mlp.fc2.bias") && t.contains_key("vision_tower.pre_layrnorm.weight"));
    assert_eq!(t.keys().filter(|k| k.starts_with("multi_modal_projector.")).count(), 4);

    if writing_fixtures() {
        write_check_inputs(&run, &out);
        eprintln!("wrote {FIXTURES}/work: now run check.py on it (see the file's header)");
        return;
    }
    // The committed transformers check ran on exactly this export.
    let result = json(&Path::new(FIXTURES).join("result.json"));
    assert_eq!(result["missing_keys"], Value::Array(vec![]), "{result}");
    assert_eq!(result["processor"]["chat_template_prompt_equal"], true, "apply_chat_template gives the run's prompt");
    assert_eq!(result["processor"]["max_abs_pixel_diff"], 0.0, "LlavaImageProcessor (do_pad) gives anchorage's pixels");
    assert_eq!(result["unexpected_keys"], Value::Array(vec![]), "{result}");
    let diff = result["max_abs_logit_diff"].as_f64().unwrap();
    assert!(diff <= 1e-4, "transformers' logits differ from anchorage's by {diff}");
    assert!(result["positions"].as_u64().unwrap() > 64, "{result}");
    let committed = &result["tensors"];
    let fresh = stats(&t);
    assert_eq!(committed.as_object().unwrap().len(), fresh.len(), "tensor count changed: regenerate the fixture (see the file's header)");
    for (k, (shape, sum, sq)) in &fresh {
        let c = &committed[k];
        assert_eq!(c["shape"], serde_json::json!(shape), "{k}");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        assert!(close(*sum, c["sum"].as_f64().unwrap()) && close(*sq, c["sum_sq"].as_f64().unwrap()), "{k}: the export changed since result.json; regenerate the fixture");
    }
}

/// Whether this run regenerates the inputs of the transformers check.
fn writing_fixtures() -> bool {
    std::env::var_os("ANCHORAGE_WRITE_FIXTURES").is_some()
}

/// Copies the folder `export` to `work/<name>` (replacing it); returns `work/`.
fn copy_to_work(export: &Path, name: &str) -> PathBuf {
    let work = Path::new(FIXTURES).join("work");
    std::fs::create_dir_all(&work).unwrap();
    let _ = std::fs::remove_dir_all(work.join(name));
    let status = std::process::Command::new("cp").args(["-r", export.to_str().unwrap(), work.join(name).to_str().unwrap()]).status().unwrap();
    assert!(status.success());
    work
}

/// `work/`: the export and anchorage's input and logits for the transformers check.
fn write_check_inputs(run: &Path, export: &Path) {
    let work = copy_to_work(export, "hf");
    let loaded = load_run::<Flex>(run, &Default::default()).unwrap();
    let tokenizer = TextTokenizer::from_file(loaded.built.tokenizer.as_ref().unwrap()).unwrap();
    let ids = question_ids(&tokenizer, loaded.card.template, QUESTION, true).unwrap();
    let pixels = load_pixel_values(Path::new(IMAGE), loaded.card.aspect, &loaded.built.processor).unwrap();
    let size = pixels.size;
    let prompt = Prompt { input_ids: ids.clone(), pixels: Some(pixels.clone()), anyres: None };
    let logits = loaded.built.model.prompt_logits(&prompt).unwrap().into_data();
    let image_tokens = loaded.built.model.image_tokens;
    let expanded: Vec<i64> = ids.iter().flat_map(|&id| if id == anchorage_model::IMAGE_TOKEN_INDEX { vec![1024; image_tokens] } else { vec![id] }).collect();
    let n = expanded.len();
    let t: BTreeMap<String, TensorData> = [
        ("input_ids".to_string(), TensorData::new(expanded, [1, n])),
        ("pixel_values".to_string(), TensorData::new(pixels.data, [1, 3, size, size])),
        ("logits".to_string(), logits),
    ]
    .into_iter()
    .collect();
    anchorage_llm::write_tensors(&work.join("anchorage.safetensors"), &t).unwrap();
    let prompt_text = anchorage_data::text::question_prompt(loaded.card.template, QUESTION, true);
    let meta = serde_json::json!({"image": IMAGE, "prompt": prompt_text, "question": QUESTION});
    std::fs::write(work.join("prompt.json"), serde_json::to_string_pretty(&meta).unwrap()).unwrap();
}

#[test]
fn a_lora_run_needs_merge_lora_and_then_holds_base_plus_scaled_ba() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path(), "tiny-lora", &["connector.kind=\"mlp\"", "connector.depth=2", "llm.training=\"lora\"", "llm.lora={ rank = 4, alpha = 8, targets = [\"q_proj\", \"down_proj\"] }"]);
    let out = tmp.path().join("hf");
    let o = export(&run, &out, &[]);
    assert!(!o.status.success() && text(&o).contains("--merge-lora"), "{}", text(&o));
    assert!(!out.exists(), "a refused export leaves nothing");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no partial folder beside it");
    let o = export(&run, &out, &["--merge-lora"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("lora merged:    true"), "{}", text(&o));

    let t = tensors(&out);
    assert!(!t.keys().any(|k| k.contains("lora")), "no adapter tensors in a merged export");
    let loaded = load_run::<Flex>(&run, &Default::default()).unwrap();
    let layer = &loaded.built.model.llm().model.layers[1];
    let w: Vec<f32> = layer.mlp.down_proj.weight.val().into_data().to_vec().unwrap(); // [in, out]
    let l = layer.mlp.down_lora.as_ref().unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (l.lora_a.val().into_data().to_vec().unwrap(), l.lora_b.val().into_data().to_vec().unwrap());
    assert!(b.iter().any(|&x| x != 0.0), "the adapter trained");
    let [d_in, d_out] = layer.mlp.down_proj.weight.dims();
    let got = f32s(&t["language_model.model.layers.1.mlp.down_proj.weight"]); // [out, in]
    for o in 0..d_out {
        for i in 0..d_in {
            let ba: f32 = (0..4).map(|r| b[r * d_out + o] * a[i * 4 + r]).sum();
            let want = w[i * d_out + o] + 2.0 * ba;
            assert!((got[o * d_in + i] - want).abs() < 1e-5, "[{o}, {i}]: {} vs {want}", got[o * d_in + i]);
        }
    }
}

#[test]
fn another_connector_leaves_llm_tower_and_connector_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path(), "tiny-af", &[]);
    let out = tmp.path().join("hf");
    let o = export(&run, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("anchor_former"), "{}", text(&o));
    assert_eq!(json(&out.join("llm/config.json"))["architectures"][0], "LlamaForCausalLM");
    assert_eq!(json(&out.join("vision_tower/config.json"))["model_type"], "clip_vision_model");
    let llm = tensors(&out.join("llm"));
    assert_eq!(llm["model.embed_tokens.weight"].shape.to_vec(), vec![1024, 64]);
    assert!(tensors(&out.join("vision_tower")).contains_key("vision_model.encoder.layers.0.self_attn.q_proj.weight"));
    let (_, config, _) = anchorage_connectors::format::load::<Flex>(&out.join("connector.safetensors"), &Default::default()).unwrap();
    assert_eq!(config.kind(), "anchor_former");
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("AutoModelForCausalLM") && readme.contains("CLIPVisionModel") && readme.contains("connector.safetensors"), "{readme}");
    // The LLM folder loads back into anchorage as the run's LLM.
    let back = anchorage_llm::load_llm::<Flex>(&out.join("llm"), burn::tensor::DType::F32, &Default::default()).unwrap();
    let loaded = load_run::<Flex>(&run, &Default::default()).unwrap();
    assert_eq!(back.config, loaded.built.model.llm().config);
    let embed = |m: &anchorage_llm::Llm<Flex>| -> Vec<f32> { m.model.embed_tokens.weight.val().into_data().to_vec().unwrap() };
    assert_eq!(embed(&back), embed(loaded.built.model.llm()));
    if writing_fixtures() {
        copy_to_work(&out, "beside");
        return;
    }
    // transformers loads both folders with no missing or unexpected key (check.py).
    let result = json(&Path::new(FIXTURES).join("result.json"));
    let beside = &result["beside"];
    for key in ["llm_missing_keys", "llm_unexpected_keys", "vision_missing_keys", "vision_unexpected_keys"] {
        assert_eq!(beside[key], Value::Array(vec![]), "{key}: {result}");
    }
    assert_eq!(beside["llm_class"], "LlamaForCausalLM");
}

#[test]
fn refused_exports_leave_nothing_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a run folder.
    let out = tmp.path().join("hf");
    let o = export(&tmp.path().join("no-such-run"), &out, &[]);
    assert!(!o.status.success() && text(&o).contains("no-such-run"), "{}", text(&o));
    assert!(!out.exists());
    // An existing, non-empty destination is refused by name and left as it was.
    let run = mlp_run(tmp.path());
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = export(&run, &out, &[]);
    assert!(!o.status.success() && text(&o).contains(out.to_str().unwrap()) && text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    let names: Vec<String> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
    // --merge-lora belongs to hf-llava-full.
    let o = train(&["export", run.to_str().unwrap(), "--format", "llava", "--out", tmp.path().join("c.safetensors").to_str().unwrap(), "--merge-lora"]);
    assert!(!o.status.success() && text(&o).contains("hf-llava-full"), "{}", text(&o));
}

/// The round trip inside anchorage: the exported folder, read back by `train inspect llava` (the
/// llava-hf reader, with the folder's own processor), gives the run's pixels and logits.
#[test]
fn exported_folder_reads_back_through_inspect_llava_with_the_runs_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let run = mlp_run(tmp.path());
    let out = tmp.path().join("hf");
    let o = export(&run, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));

    let loaded = load_run::<Flex>(&run, &Default::default()).unwrap();
    let tokenizer = TextTokenizer::from_file(loaded.built.tokenizer.as_ref().unwrap()).unwrap();
    let ids = question_ids(&tokenizer, loaded.card.template, QUESTION, true).unwrap();
    let pixels = load_pixel_values(Path::new(IMAGE), loaded.card.aspect, &loaded.built.processor).unwrap();
    let ours: Vec<f32> = loaded.built.model.prompt_logits(&Prompt { input_ids: ids.clone(), pixels: Some(pixels.clone()), anyres: None }).unwrap().into_data().to_vec().unwrap();

    let inspected = tmp.path().join("inspect.safetensors");
    let id_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let o = train(&["inspect", "llava", "--model", out.to_str().unwrap(), "--image", IMAGE, &format!("--ids={id_list}"), "--out", inspected.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = anchorage_llm::read_tensors(&inspected).unwrap();
    assert_eq!(f32s(&t["pixel_values"]), pixels.data, "the folder's LlavaImageProcessor (do_pad) gives the run's pixels");
    let logits = &t["logits"];
    let [_, len, vocab] = <[usize; 3]>::try_from(logits.shape.to_vec()).unwrap();
    assert_eq!(vocab, 1025, "the <image> row");
    assert_eq!(len * 1024, ours.len());
    let theirs = f32s(logits);
    let max = (0..len).flat_map(|p| (0..1024).map(move |v| (p, v))).map(|(p, v)| (theirs[p * vocab + v] - ours[p * 1024 + v]).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-4, "read-back logits differ from the run's by {max}");
}

/// A recipe can start from a llava-hf folder: `[vision]` and `[llm]` `model.path` naming the folder
/// load its tower and language model, and `connector.init` naming it starts the MLP connector from
/// its `multi_modal_projector`. One warmup step (lr 0, as transformers' schedule starts) leaves the
/// connector as it started: exactly the folder's projector, which is the exported run's connector.
#[test]
fn a_recipe_starts_from_a_llava_hf_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = format!("run.output_dir=\"{}\"", dir.path().display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_train")).args(args).env("RUST_LOG", "warn").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    run(&["pretrain", "recipes/tiny/pretrain.toml", "--set", &out_dir, "--set", "optim.max_steps=2", "--set", "connector.kind=mlp", "--set", "run.name=\"src\""]);
    let hf = dir.path().join("hf");
    run(&["export", dir.path().join("src").to_str().unwrap(), "--format", "hf-llava-full", "--out", hf.to_str().unwrap()]);
    let path = |key: &str| format!("{key}={{ path = \"{}\" }}", hf.display());
    let init = format!("connector.init=\"{}\"", hf.display());
    let args = ["ift", "recipes/tiny/ift.toml", "--set", &out_dir, "--set", "run.name=\"from-hf\"", "--set", "optim.max_steps=1", "--set", "optim.warmup_ratio=0.5",
        "--set", "connector.kind=mlp", "--set", &init, "--set", &path("vision.model"), "--set", &path("llm.model")];
    let dry = run(&[&args[..], &["--dry-run"]].concat());
    assert!(dry.contains("checked:"), "{dry}");
    run(&args);
    let device = Default::default();
    let load = |p: &Path| anchorage_connectors::format::load::<burn::backend::Flex>(p, &device).unwrap();
    let flat = common::parameters::<anchorage_connectors::Connector<Flex>>;
    let (src, _, _) = load(&dir.path().join("src/connector.safetensors"));
    let (started, _, _) = load(&dir.path().join("from-hf/connector.safetensors"));
    assert_eq!(flat(&started), flat(&src));
    let card = std::fs::read_to_string(dir.path().join("from-hf/model.toml")).unwrap();
    assert!(card.contains(&hf.display().to_string()), "{card}");
}
