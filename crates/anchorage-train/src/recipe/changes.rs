//! What a resumed run may change in its recipe. Keys that shape the model (its sections), the
//! data order (seed, batch sizes, the data set and how its records become samples, the sampler)
//! or the data-parallel world are fixed for the life of a run: a checkpoint's weights and data
//! position mean nothing under another value. Everything else (learning rate and schedule,
//! clipping, cadence of logs and checkpoints, workers, the data root's location, ...) may change
//! when the user says so (`--allow-recipe-change`); the change is recorded in the run folder.

use toml::{Table, Value};

/// One key whose value differs between two recipes (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq)]
pub struct RecipeChange {
    pub key: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl RecipeChange {
    /// Whether the change would make the checkpoint's weights or data position meaningless.
    pub fn is_fixed(&self) -> bool {
        fixed_key(&self.key)
    }

    /// The change as one JSON object: `{"key", "from", "to"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "key": self.key, "from": self.from, "to": self.to })
    }
}

/// Keys fixed for the life of a run (a key or the prefix of a section).
const FIXED: [&str; 14] = [
    "vision.",
    "llm.",
    "connector.",
    "compression",
    "run.seed",
    "run.stage",
    "optim.global_batch",
    "optim.micro_batch",
    "data.manifest",
    "data.template",
    "data.aspect",
    "data.max_length",
    "data.group_by_modality_length",
    "devices.",
];

/// Keys inside the fixed sections that shape neither the weights nor the data order.
const FREE_IN_FIXED: [&str; 3] = [
    // Recomputes activations in the backward pass; the losses are identical (tested).
    "llm.gradient_checkpointing",
    // How the attention's backward pass gets its probabilities: the same forward values, gradients
    // equal to float rounding (kernels/tests/parity_cases.rs).
    "llm.recompute_attention",
    // Only the first start reads it: a resumed run's connector comes from its checkpoint.
    "connector.init",
];

/// Keys that name where the run folder is, which `--resume RUN_DIR` sets itself.
const IGNORED: [&str; 2] = ["run.name", "run.output_dir"];

fn fixed_key(key: &str) -> bool {
    !FREE_IN_FIXED.contains(&key) && FIXED.iter().any(|p| key == p.trim_end_matches('.') || key.starts_with(p))
}

/// The keys whose values differ between the `saved` recipe (a checkpoint's recipe.toml) and the
/// `current` one, in key order. Both are resolved recipes (every key written out); the saved one is
/// first read through today's schema when it can be, so a key added since (written out with its
/// default now, absent then) is not a change.
pub fn recipe_changes(saved: &str, current: &str) -> Result<Vec<RecipeChange>, String> {
    let saved = toml::from_str::<super::Recipe>(saved).map(|r| r.to_toml()).unwrap_or_else(|_| saved.to_string());
    let saved = saved.as_str();
    let parse = |text: &str, which: &str| text.parse::<Table>().map_err(|e| format!("{which} recipe: {e}"));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten("", &parse(saved, "the checkpoint's")?, &mut a);
    flatten("", &parse(current, "the current")?, &mut b);
    let a: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    let b: std::collections::BTreeMap<_, _> = b.into_iter().collect();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| !IGNORED.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .map(|k| RecipeChange { key: k.clone(), from: a.get(k).cloned(), to: b.get(k).cloned() })
        .collect())
}

/// Leaves as (dotted key, value as TOML text); arrays are leaves.
fn flatten(prefix: &str, table: &Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_data_order_keys_are_fixed_the_rest_is_free() {
        let saved = "[run]\nname = \"a\"\nseed = 1\n[optim]\nlr = 1e-3\nglobal_batch = 8\n[connector]\nkind = \"mlp\"\ndepth = 2\n[llm]\ngradient_checkpointing = false\n";
        let current = "[run]\nname = \"b\"\nseed = 1\n[optim]\nlr = 2e-3\nglobal_batch = 16\n[connector]\nkind = \"mlp\"\ndepth = 3\n[llm]\ngradient_checkpointing = true\n[log]\nevery_steps = 5\n";
        let changes = recipe_changes(saved, current).unwrap();
        let keys: Vec<(&str, bool)> = changes.iter().map(|c| (c.key.as_str(), c.is_fixed())).collect();
        assert_eq!(
            keys,
            vec![("connector.depth", true), ("llm.gradient_checkpointing", false), ("log.every_steps", false), ("optim.global_batch", true), ("optim.lr", false)]
        );
        assert_eq!(changes[0].from.as_deref(), Some("2"));
        assert_eq!(changes[2].from, None);
        assert!(recipe_changes(saved, saved).unwrap().is_empty());
        assert!(RecipeChange { key: "compression.method".into(), from: None, to: None }.is_fixed());
        assert!(RecipeChange { key: "devices.ids".into(), from: None, to: None }.is_fixed());
        assert!(!RecipeChange { key: "data.workers".into(), from: None, to: None }.is_fixed());
    }

    #[test]
    fn a_key_added_since_the_checkpoint_is_not_a_change() {
        let recipe = crate::recipe::parse_recipe(&std::fs::read_to_string("../../recipes/tiny/pretrain.toml").unwrap().replace("data-manifests/", "../../data-manifests/"), std::path::Path::new("tiny.toml"), &[]).unwrap();
        let current = recipe.to_toml();
        // A checkpoint written before `optim.max_nonfinite_steps` existed.
        let old: String = current.lines().filter(|l| !l.starts_with("max_nonfinite_steps")).map(|l| format!("{l}\n")).collect();
        assert_ne!(old, current);
        assert!(recipe_changes(&old, &current).unwrap().is_empty());
    }
}
