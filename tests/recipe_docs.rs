//! docs/recipes.md cannot drift from the recipe types: the keys it lists are exactly the keys that
//! resolved recipes hold, over every shipped recipe, every compression method, every connector kind
//! and the optional keys set on top.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anchorage_train::recipe::load_recipe;

fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string("docs/recipes.md").unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn recipes(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            recipes(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

fn resolved_keys() -> BTreeSet<String> {
    let mut files = Vec::new();
    recipes(Path::new("recipes"), &mut files);
    let optional: &[&[&str]] = &[
        &[],
        &["compression.method=fastv"],
        &["compression.method=himap"],
        &["compression.method=act"],
        &["connector.kind=mlp", "connector.projector_type=mlp2x_gelu"],
        &["connector.kind=c_abstractor"],
        &["connector.kind=resampler"],
        &["connector.kind=anchor_former"],
        &["llm.training=lora", "llm.lora={ rank = 4, alpha = 8.0, dropout = 0.0, targets = [\"q_proj\"] }"],
        &["vision.image_size=672", "optim.max_steps=3"],
        &["optim.zero_stage=1"],
        &["vision.model={ hub = \"openai/clip-vit-large-patch14-336\", revision = \"main\" }", "llm.model={ path = \"recipes\" }"],
        &["vision.model={ path = \"recipes\" }", "llm.model={ hub = \"lmsys/vicuna-7b-v1.5\", revision = \"main\" }"],
    ];
    let mut keys = BTreeSet::new();
    for file in &files {
        for set in optional {
            let overrides: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            // A variant a recipe refuses (LoRA on a frozen stage, say) adds nothing; each key is
            // still reached through the recipes that accept it.
            let Ok(recipe) = load_recipe(file, &overrides) else { continue };
            let value: toml::Value = toml::from_str(&recipe.to_toml()).unwrap();
            flatten("", &value, &mut keys);
        }
    }
    keys
}

#[test]
fn docs_list_exactly_the_keys_a_recipe_can_hold() {
    let documented = documented();
    let resolved = resolved_keys();
    let undocumented: Vec<_> = resolved.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&resolved).collect();
    assert!(undocumented.is_empty(), "keys a recipe holds but docs/recipes.md does not list: {undocumented:?}");
    assert!(unknown.is_empty(), "keys docs/recipes.md lists that no resolved recipe holds: {unknown:?}");
    assert!(documented.len() > 60, "{documented:?}");
}
