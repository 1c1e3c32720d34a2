//! `key=value` settings over a tower's spec, for tuning without a rebuild: `train demo --llm ...`,
//! `train demo --vision ...` and the `tower_probe` example read them. A changed setting changes
//! the tower's stamp, so `train demo` trains that tower again instead of reusing it.

use crate::{DemoError, LlmSpec, TrainSpec, VisionSpec};

fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, DemoError> {
    value
        .parse()
        .map_err(|_| DemoError::Train(format!("setting `{key}={value}`: `{value}` is not a valid value for `{key}`")))
}

fn split(setting: &str) -> Result<(&str, &str), DemoError> {
    setting
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| DemoError::Train(format!("setting `{setting}`: expected key=value")))
}

/// The training keys both towers share. `Ok(false)`: not one of them.
fn set_train(train: &mut TrainSpec, key: &str, value: &str) -> Result<bool, DemoError> {
    match key {
        "steps" => train.steps = parse(key, value)?,
        "batch" => train.batch = parse(key, value)?,
        "lr" => train.lr = parse(key, value)?,
        "warmup" => train.warmup = parse(key, value)?,
        "slices" => train.slices = parse(key, value)?,
        _ => return Ok(false),
    }
    if train.batch == 0 || train.steps == 0 || train.slices == 0 {
        return Err(DemoError::Train(format!("setting `{key}={value}`: steps, batch and slices must be at least 1")));
    }
    Ok(true)
}

const TRAIN_KEYS: &str = "steps, batch, lr, warmup, slices";
/// The LLM's own keys (after [`TRAIN_KEYS`]), as the error for an unknown key lists them.
const LLM_KEYS: &str = "curriculum, layers, width, mlp, heads, corpus_first, matching, negation, drill_share, question_share, colour_drills, grid_slots";
/// The vision tower's own keys (after [`TRAIN_KEYS`]).
const VISION_KEYS: &str = "layers, width, mlp, heads, patch";

impl LlmSpec {
    /// The demo's LLM for `vocab` ([`LlmSpec::with_presence_curriculum`], the default) with
    /// `settings` applied in order. `curriculum=none` starts from [`LlmSpec::for_vocab`] instead
    /// (the corpus alone, its own shorter training), wherever it stands; the others override
    /// single values: the training keys, `layers`, `width`, `mlp`, `heads` (each a key/value head
    /// of `width / heads`), and the curriculum's `corpus_first`,
    /// `matching`, `negation`, `drill_share`, `question_share`, `colour_drills`, `grid_slots`.
    pub fn with_settings(vocab: usize, settings: &[String]) -> Result<Self, DemoError> {
        let pairs = settings.iter().map(|s| split(s)).collect::<Result<Vec<_>, _>>()?;
        let mut spec = if pairs.contains(&("curriculum", "none")) {
            Self::for_vocab(vocab)
        } else {
            Self::with_presence_curriculum(vocab)
        };
        for (key, value) in pairs {
            if set_train(&mut spec.train, key, value)? {
                continue;
            }
            let c = &mut spec.curriculum;
            match key {
                "curriculum" if value == "presence" || value == "none" => {}
                "curriculum" => {
                    return Err(DemoError::Train(format!("setting `curriculum={value}`: known curricula are `presence` and `none`")))
                }
                "layers" => spec.config.num_hidden_layers = parse(key, value)?,
                "width" => spec.config.hidden_size = parse(key, value)?,
                "mlp" => spec.config.intermediate_size = parse(key, value)?,
                "heads" => spec.config.num_attention_heads = parse(key, value)?,
                "corpus_first" => c.corpus_first = parse(key, value)?,
                "matching" => c.matching = parse(key, value)?,
                "negation" => c.negation = parse(key, value)?,
                "drill_share" => c.drill_share = parse(key, value)?,
                "question_share" => c.question_share = parse(key, value)?,
                "colour_drills" => c.colour_drills = parse(key, value)?,
                "grid_slots" => c.grid_slots = parse(key, value)?,
                _ => {
                    return Err(DemoError::Train(format!(
                        "LLM setting `{key}`: unknown; known: {TRAIN_KEYS}, {LLM_KEYS}"
                    )))
                }
            }
        }
        let (heads, width) = (spec.config.num_attention_heads, spec.config.hidden_size);
        if heads == 0 || width % heads != 0 {
            return Err(DemoError::Train(format!("LLM settings: {heads} heads do not split a width of {width}")));
        }
        spec.split_heads(heads);
        let c = &spec.curriculum;
        let phases = [c.corpus_first, c.matching, c.negation, c.drill_share, c.question_share, c.colour_drills, c.grid_slots];
        if phases.iter().any(|f| !(0.0..=1.0).contains(f))
            || c.corpus_first + c.matching + c.negation > 1.0 + 1e-9
            || c.drill_share + c.question_share > 1.0 + 1e-9
        {
            return Err(DemoError::Train(format!(
                "LLM curriculum {c:?}: every fraction must lie in [0, 1], and neither corpus_first + matching + negation nor drill_share + question_share may exceed 1"
            )));
        }
        Ok(spec)
    }
}

impl VisionSpec {
    /// The default vision tower with `settings` applied in order: the training keys and `layers`,
    /// `width`, `mlp`, `heads`, `patch`.
    pub fn with_settings(settings: &[String]) -> Result<Self, DemoError> {
        let mut spec = Self::default();
        for setting in settings {
            let (key, value) = split(setting)?;
            if set_train(&mut spec.train, key, value)? {
                continue;
            }
            let config = &mut spec.config;
            match key {
                "layers" => config.num_hidden_layers = parse(key, value)?,
                "width" => config.hidden_size = parse(key, value)?,
                "mlp" => config.intermediate_size = parse(key, value)?,
                "heads" => config.num_attention_heads = parse(key, value)?,
                "patch" => config.patch_size = parse(key, value)?,
                _ => {
                    return Err(DemoError::Train(format!(
                        "vision setting `{key}`: unknown; known: {TRAIN_KEYS}, {VISION_KEYS}"
                    )))
                }
            }
        }
        Ok(spec)
    }
}
