//! Generation and evaluation of AnyRes models:
//! - a tiny AnyRes run (MLP, LLaVA-NeXT packing) evaluates through `train eval run`, with the same
//!   answers at batch size 1 and 4 (prompts of different packed token counts in one batch), and
//!   reports the packed visual-token count;
//! - a llava-hf LLaVA-NeXT folder prepared for generation (`hf_llava_for_generation`, what
//!   `train eval run` / `train generate` use) gives the prefill logits `train inspect llava` gives
//!   (`inspect_tensors`, checked against transformers by the hf_llava fixtures) for the same ids
//!   and image, alone and batched with other aspect ratios, and greedy decoding starts with the
//!   argmax of the inspect logits' last row.

use crate::common;

use std::path::{Path, PathBuf};

use anchorage_data::image::decode_rgb;
use anchorage_data::text::TextTokenizer;
use anchorage_data::{AnyResProcessor, Aspect, Template};
use anchorage_eval::run::{hf_llava_for_generation, EvalModel, HfGenerationModel};
use anchorage_model::hf_llava::{inspect_tensors, HfImageProcessor, HfLlava};
use anchorage_model::{Prompt, IMAGE_TOKEN_INDEX};
use anchorage_train::Recipe;
use burn::backend::Flex;
use common::{text, train};

const PINPOINTS: &str = "vision.grid_pinpoints=[[32, 64], [64, 32], [64, 64]]";
/// Wide (89x51), tall (40x59), squarish (77x80) and wide (78x47) images: three grids.
const IMAGES: [&str; 4] = ["img01.png", "img05.jpg", "img02.png", "img03.png"];

fn tiny_images() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data-manifests/tiny/data/images")
}

fn ok(args: &[&str]) -> String {
    let out = train(args);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    t
}

/// Eight questions over [`IMAGES`], question 5 text-only.
fn question_file(dir: &Path) -> (PathBuf, Vec<Option<&'static str>>) {
    let (mut lines, mut images) = (String::new(), Vec::new());
    for i in 0..8 {
        let image = (i != 5).then_some(IMAGES[i % 4]);
        let mut q = serde_json::json!({ "question_id": i, "text": format!("What is shape {i}?") });
        if let Some(img) = image {
            q["image"] = serde_json::json!(img);
        }
        lines.push_str(&format!("{q}\n"));
        images.push(image);
    }
    let path = dir.join("questions.jsonl");
    std::fs::write(&path, lines).unwrap();
    (path, images)
}

/// The packed visual tokens of an image for the run's model, as training's data set counts them.
fn packed_tokens(run: &Path, image: &str) -> usize {
    let recipe = Recipe::from_saved(&run.join("recipe.toml")).unwrap();
    let spec = recipe.model_spec();
    let built = spec.build::<Flex, Flex>(&Default::default(), None).unwrap();
    let processor = AnyResProcessor::new(built.processor.clone(), spec.vision.pinpoints()).unwrap();
    let views = processor.preprocess(&decode_rgb(&tiny_images().join(image)).unwrap());
    let (rows, cols) = processor.grid_shape(views.image_size);
    let size = (views.image_size.0 as usize, views.image_size.1 as usize);
    built
        .model
        .tile_packing()
        .packed_tokens((rows as usize, cols as usize), size)
}

#[test]
fn an_anyres_run_answers_the_same_at_any_batch_size_and_reports_packed_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "data.aspect=\"anyres\"".to_string(),
        PINPOINTS.to_string(),
        "data.max_length=512".to_string(),
        "optim.max_steps=2".to_string(),
        format!("run.output_dir=\"{}\"", dir.path().display()),
        "run.name=\"anyres\"".to_string(),
        "connector.kind=\"mlp\"".to_string(),
        "connector.projector_type=\"mlp2x_gelu\"".to_string(),
        "vision.feature_select=\"patch\"".to_string(),
    ];
    let mut args = vec!["pretrain", "recipes/tiny/pretrain.toml"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    ok(&args);
    let run = dir.path().join("anyres");
    let (questions, images) = question_file(dir.path());
    let eval = |batch: &str, answers: &Path| {
        let (r, q, i, a) = (
            run.to_str().unwrap(),
            questions.to_str().unwrap(),
            tiny_images(),
            answers.to_str().unwrap(),
        );
        ok(&[
            "eval",
            "run",
            r,
            "--question-file",
            q,
            "--image-folder",
            i.to_str().unwrap(),
            "--answers-file",
            a,
            "--batch-size",
            batch,
            "--max-new-tokens",
            "5",
        ])
    };
    let (one, four) = (dir.path().join("bs1.jsonl"), dir.path().join("bs4.jsonl"));
    let report = eval("1", &one);
    eval("4", &four);
    let a = std::fs::read_to_string(&one).unwrap();
    assert_eq!(a.lines().count(), 8);
    assert_eq!(
        a,
        std::fs::read_to_string(&four).unwrap(),
        "batch size 4 must answer exactly as batch size 1"
    );

    let counts: Vec<usize> = IMAGES.iter().map(|i| packed_tokens(&run, i)).collect();
    assert!(
        counts.iter().any(|&c| c != counts[0]),
        "the images should pack to different counts: {counts:?}"
    );
    let total: usize = images
        .iter()
        .flatten()
        .map(|i| counts[IMAGES.iter().position(|x| x == i).unwrap()])
        .sum();
    let line = format!("visual tokens:  {:.1} per question", total as f64 / 8.0);
    assert!(report.contains(&line), "expected `{line}` in\n{report}");

    // `train generate` answers an AnyRes question as `eval run` did.
    let img = tiny_images().join(IMAGES[1]);
    let out = ok(&[
        "generate",
        run.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--prompt",
        "What is shape 1?",
        "--max-new-tokens",
        "5",
    ]);
    let first: serde_json::Value = serde_json::from_str(a.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        out.lines().next().unwrap_or_default(),
        first["text"].as_str().unwrap()
    );
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_llava")
}

/// The LLaVA-NeXT fixture folder as `train eval run` prepares it (the tokenizer is a stand-in:
/// the prompts here are ids).
fn next_for_generation() -> EvalModel<Flex> {
    let dir = fixture().join("llava_next_llama");
    let hf = HfLlava::<Flex>::load(&dir, &Default::default()).unwrap();
    let image = HfImageProcessor::read(&dir, &hf.config).unwrap();
    let HfGenerationModel {
        model,
        aspect,
        processor,
        anyres,
    } = hf_llava_for_generation(hf, image).unwrap();
    assert_eq!(aspect, Aspect::AnyRes);
    let tokenizer = TextTokenizer::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data-manifests/tiny/data/tokenizer.json"),
    )
    .unwrap();
    EvalModel {
        model,
        tokenizer,
        template: Template::Plain,
        aspect,
        processor,
        anyres,
        model_id: "next".into(),
    }
}

fn rows(t: burn::tensor::TensorData) -> (Vec<usize>, Vec<f32>) {
    (t.shape.to_vec(), t.convert::<f32>().to_vec().unwrap())
}

#[test]
fn llava_next_generation_prefill_equals_inspect_llava() {
    let dir = fixture().join("llava_next_llama");
    let inspect_model = HfLlava::<Flex>::load(&dir, &Default::default()).unwrap();
    let inspect_processor = HfImageProcessor::read(&dir, &inspect_model.config).unwrap();
    let m = next_for_generation();
    let cases: [(&str, Vec<i64>); 3] = [
        ("wide.png", vec![1, 5, IMAGE_TOKEN_INDEX, 7, 9, 11]),
        ("tall.png", vec![1, IMAGE_TOKEN_INDEX, 3, 4]),
        (
            "square.png",
            vec![1, 20, 21, 22, IMAGE_TOKEN_INDEX, 30, 31, 32, 33],
        ),
    ];
    let mut prompts = Vec::new();
    let mut wanted = Vec::new();
    for (image, ids) in &cases {
        let path = fixture().join(image);
        let tensors = inspect_tensors(
            &inspect_model,
            &inspect_processor,
            &path,
            ids,
            &Default::default(),
        )
        .unwrap();
        let get = |name: &str| rows(tensors.iter().find(|(n, _)| n == name).unwrap().1.clone());
        let (logits_shape, logits) = get("logits");
        let (features_shape, _) = get("image_features");
        let (pixels, anyres) = m.load_image(&path).unwrap();
        let prompt = Prompt {
            input_ids: ids.clone(),
            pixels: Some(pixels),
            anyres,
        };
        // Alone: the same logits, and the packed visual tokens are inspect's image rows.
        let (shape, got) = rows(
            m.model
                .prefill_logits(std::slice::from_ref(&prompt), 0)
                .unwrap()
                .into_data(),
        );
        assert_eq!(shape, logits_shape, "{image}");
        let diff = got
            .iter()
            .zip(&logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{image}: generation's prefill differs from inspect llava by {diff}"
        );
        let generation = m
            .model
            .generate(std::slice::from_ref(&prompt), 1, &[], 0)
            .unwrap();
        assert_eq!(generation.visual_tokens, vec![features_shape[0]], "{image}");
        let vocab = logits_shape[2];
        let last = &logits[logits.len() - vocab..];
        let argmax = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        assert_eq!(
            generation.tokens[0],
            vec![argmax as u32],
            "{image}: greedy's first token is inspect's argmax"
        );
        prompts.push(prompt);
        wanted.push((logits_shape[1], logits));
    }
    // Batched (three aspect ratios, three packed counts, right padded): each prompt's rows are its own.
    let (shape, got) = rows(m.model.prefill_logits(&prompts, 0).unwrap().into_data());
    let (len, vocab) = (shape[1], shape[2]);
    assert!(
        wanted
            .iter()
            .map(|w| w.0)
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "different spliced lengths"
    );
    for (i, (n, want)) in wanted.iter().enumerate() {
        let mine = &got[i * len * vocab..i * len * vocab + n * vocab];
        let diff = mine
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < 1e-4,
            "{}: batched prefill differs by {diff}",
            cases[i].0
        );
    }
}

/// A LLaVA-NeXT folder whose packing generation would not reproduce is refused, naming the key.
#[test]
fn llava_next_folders_that_generation_would_pack_differently_are_refused() {
    let refusal = |file: &str, from: &str, to: &str| {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(fixture().join("llava_next_llama")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let edited = text.replacen(from, to, 1);
        assert_ne!(edited, text, "{file}: `{from}` not found");
        std::fs::write(dir.path().join(file), edited).unwrap();
        let hf = HfLlava::<Flex>::load(dir.path(), &Default::default()).unwrap();
        let image = HfImageProcessor::read(dir.path(), &hf.config).unwrap();
        match hf_llava_for_generation(hf, image) {
            Ok(_) => panic!("{file}: {to} was accepted"),
            Err(e) => e.to_string(),
        }
    };
    // The processor tiles on another grid than the model packs.
    let e = refusal(
        "preprocessor_config.json",
        "\"image_grid_pinpoints\": [",
        "\"image_grid_pinpoints\": [[36, 36], ",
    );
    assert!(e.contains("image_grid_pinpoints"), "{e}");
    // CLS kept: the projector's tokens are not the patch grid LLaVA-NeXT packs.
    let e = refusal(
        "config.json",
        "\"vision_feature_select_strategy\": \"default\"",
        "\"vision_feature_select_strategy\": \"full\"",
    );
    assert!(e.contains("vision_feature_select_strategy"), "{e}");
}
