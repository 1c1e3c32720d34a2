//! Every recipe and manifest shipped in the repository parses and validates, and the LLaVA-1.5
//! recipes carry the published hyperparameters.

use std::path::{Path, PathBuf};

use anchorage_data::{Manifest, SampleCountSource};
use anchorage_train::recipe::{load_recipe, LlmTraining};
use anchorage_train::{Plan, Stage};

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_recipe_parses_validates_and_plans() {
    let recipes = toml_files("recipes");
    assert!(recipes.len() >= 12, "expected the stage-1/2 recipes and the tiny ones, found {recipes:?}");
    for path in recipes {
        let recipe = load_recipe(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let plan = Plan::new(&recipe).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(plan.total_steps > 0, "{}", path.display());
        let folder = path.parent().unwrap().file_name().unwrap().to_str().unwrap();
        match folder {
            "pretrain" => assert_eq!(recipe.run.stage, Stage::Pretrain, "{}", path.display()),
            "ift" => assert_eq!(recipe.run.stage, Stage::Ift, "{}", path.display()),
            _ => {}
        }
    }
}

#[test]
fn every_manifest_parses() {
    let manifests = toml_files("data-manifests");
    assert!(manifests.len() >= 4, "{manifests:?}");
    for path in manifests {
        Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn llava_stage_recipes_follow_the_published_hyperparameters() {
    for name in ["mlp2x_gelu", "c_abstractor", "resampler", "anchor_former_145", "anchor_former_257"] {
        let pre = load_recipe(&Path::new("recipes/pretrain").join(format!("{name}.toml")), &[]).unwrap();
        assert_eq!(pre.optim.lr, 1e-3, "{name}");
        assert_eq!(pre.optim.global_batch, 256, "{name}");
        assert_eq!(pre.llm.training, LlmTraining::Frozen, "{name}");
        assert_eq!(pre.vision.model.hub.as_deref(), Some("openai/clip-vit-large-patch14-336"));
        assert_eq!(pre.llm.model.hub.as_deref(), Some("lmsys/vicuna-7b-v1.5"));
        let plan = Plan::new(&pre).unwrap();
        // 558,128 samples at global batch 256: ceil = 2181 steps, ceil(0.03 × 2181) = 66 warmup.
        if let SampleCountSource::Manifest { .. } = plan.samples.source {
            assert_eq!(plan.samples.count, 558_128);
            assert_eq!(plan.total_steps, 2181);
            assert_eq!(plan.warmup_steps, 66);
        }
        assert_eq!(plan.grad_accum, 1);

        let ift = load_recipe(&Path::new("recipes/ift").join(format!("{name}.toml")), &[]).unwrap();
        assert_eq!(ift.optim.lr, 2e-5, "{name}");
        assert_eq!(ift.optim.global_batch, 128, "{name}");
        assert_eq!(ift.llm.training, LlmTraining::Full, "{name}");
        assert!(ift.data.group_by_modality_length);
        assert!(ift.connector.init().is_some(), "stage 2 starts from the stage-1 connector");
    }
}

/// The 672 and 1008 px variants change only the input size and what it forces (max length for the
/// MLP's 2304/5184 tokens, micro batch), and plan the same steps as their 336 px recipes.
#[test]
fn high_resolution_variants_differ_only_in_input_size() {
    for stage in ["pretrain", "ift"] {
        for name in ["mlp2x_gelu", "anchor_former_257"] {
            let base = load_recipe(&Path::new("recipes").join(stage).join(format!("{name}.toml")), &[]).unwrap();
            for px in [672usize, 1008] {
                let path = Path::new("recipes").join(stage).join(format!("{name}_{px}.toml"));
                let hi = load_recipe(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(hi.vision.image_size, Some(px), "{}", path.display());
                assert_eq!((hi.optim.lr, hi.optim.global_batch), (base.optim.lr, base.optim.global_batch));
                assert_eq!(hi.connector.kind_name(), base.connector.kind_name());
                let tokens = if name.starts_with("mlp") { (px / 14) * (px / 14) } else { 257 };
                assert!(hi.data.max_length > tokens, "{}: max_length {} <= {tokens} image tokens", path.display(), hi.data.max_length);
                if let Some(init) = hi.connector.init() {
                    assert!(init.to_str().unwrap().contains(&format!("-{px}/")), "{}", init.display());
                }
                assert_eq!(Plan::new(&hi).unwrap().total_steps, Plan::new(&base).unwrap().total_steps);
            }
        }
    }
}

/// The AnyRes variants change only how images reach the model (aspect, pinpoints) and what that
/// forces (max length 4096 for the MLP's up to 2928 tokens, micro batch), and plan the same steps.
#[test]
fn anyres_variants_differ_only_in_tiling() {
    use anchorage_data::{image::TilePacking, Aspect};
    for stage in ["pretrain", "ift"] {
        for (name, tokens, spatial) in [("mlp2x_gelu", 576, true), ("anchor_former_257", 257, false)] {
            let base = load_recipe(&Path::new("recipes").join(stage).join(format!("{name}.toml")), &[]).unwrap();
            let path = Path::new("recipes").join(stage).join(format!("{name}_anyres.toml"));
            let any = load_recipe(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(any.data.aspect, Some(Aspect::AnyRes), "{}", path.display());
            assert_eq!(any.vision.pinpoints(), anchorage_data::image::DEFAULT_GRID_PINPOINTS.to_vec());
            assert_eq!((any.optim.lr, any.optim.global_batch), (base.optim.lr, base.optim.global_batch));
            assert_eq!(any.connector.kind_name(), base.connector.kind_name());
            assert_eq!(any.vision.image_size, None);
            // The largest packed image (a 2x2 grid, nothing unpadded) must fit with room for text.
            let most = TilePacking::new(tokens, spatial).packed_tokens((2, 2), (672, 672));
            assert!(any.data.max_length >= most + 1000, "{}: max_length {} for {most} image tokens", path.display(), any.data.max_length);
            if let Some(init) = any.connector.init() {
                assert!(init.to_str().unwrap().contains("-anyres/"), "{}", init.display());
            }
            assert_eq!(Plan::new(&any).unwrap().total_steps, Plan::new(&base).unwrap().total_steps);
        }
    }
}

/// A fully trained LLM in f16 is refused by key (AdamW's state underflows there: NaN after the
/// first update); bf16, and f16 for a frozen LLM or LoRA, are accepted.
#[test]
fn a_fully_trained_llm_in_f16_is_refused() {
    let ift = Path::new("recipes/tiny/ift.toml");
    let err = load_recipe(ift, &["llm.dtype=\"f16\"".to_string()]).unwrap_err().to_string();
    assert!(err.contains("llm.dtype") && err.contains("AdamW") && err.contains("bf16"), "{err}");
    load_recipe(ift, &["llm.dtype=\"bf16\"".to_string()]).unwrap();
    load_recipe(ift, &["llm.dtype=\"f16\"".to_string(), "llm.training=\"frozen\"".to_string()]).unwrap();
    let pre = Path::new("recipes/tiny/pretrain.toml");
    load_recipe(pre, &["llm.dtype=\"f16\"".to_string()]).unwrap();
}
