//! `config.json` as Hugging Face writes it for Llama-family and Qwen2 models, converted explicitly
//! into [`LlamaConfig`]. Unknown keys are ignored (HF configs carry many unrelated ones); keys this
//! crate needs and cannot default are errors naming the key.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{LlamaConfig, LlmFamily, RopeScaling};
use crate::error::LlmError;

/// The subset of a Hugging Face `config.json` that decides the architecture.
#[derive(Debug, Clone, Deserialize)]
pub struct HfLlmConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub rms_norm_eps: Option<f64>,
    /// Older configs: top level. transformers 5 writes it under `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Older configs' scaling block (`{"type": "linear", "factor": 4.0}` or `rope_type`).
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    /// transformers 5: `{rope_type, rope_theta, factor, ...}`.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub attention_bias: Option<bool>,
    #[serde(default)]
    pub mlp_bias: Option<bool>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub bos_token_id: Option<Value>,
    #[serde(default)]
    pub eos_token_id: Option<Value>,
    #[serde(default)]
    pub pad_token_id: Option<Value>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
}

impl HfLlmConfig {
    /// Reads and parses `path` (a `config.json`).
    pub fn read(path: &Path) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path).map_err(|source| LlmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| LlmError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the `text_config` of a composite config (LLaVA's), where transformers fills absent
    /// fields from the text model class's defaults (`LlamaConfig`, `Qwen2Config` in transformers
    /// 5.23; Hub configs such as llava-1.5-7b-hf list only what differs) and `model_type`
    /// defaults to `llama`. `path` names the file in errors.
    pub fn from_sub_config(value: &Value, path: &Path) -> Result<Self, LlmError> {
        let mut object = match value {
            Value::Object(map) => map.clone(),
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(LlmError::Config {
                    path: path.to_path_buf(),
                    key: "text_config".into(),
                    message: format!("expected an object, found {other}"),
                })
            }
        };
        let model_type = object.entry("model_type").or_insert_with(|| Value::from("llama")).clone();
        let defaults: &[(&str, Value)] = match model_type.as_str() {
            Some("qwen2") => &[
                ("vocab_size", Value::from(151936)),
                ("hidden_size", Value::from(4096)),
                ("intermediate_size", Value::from(22016)),
                ("num_hidden_layers", Value::from(32)),
                ("num_attention_heads", Value::from(32)),
                ("num_key_value_heads", Value::from(32)),
                ("max_position_embeddings", Value::from(32768)),
            ],
            _ => &[
                ("vocab_size", Value::from(32000)),
                ("hidden_size", Value::from(4096)),
                ("intermediate_size", Value::from(11008)),
                ("num_hidden_layers", Value::from(32)),
                ("num_attention_heads", Value::from(32)),
                ("max_position_embeddings", Value::from(2048)),
                ("bos_token_id", Value::from(1)),
                ("eos_token_id", Value::from(2)),
            ],
        };
        for (key, default) in defaults {
            object.entry(*key).or_insert_with(|| default.clone());
        }
        serde_json::from_value(Value::Object(object)).map_err(|source| LlmError::Json { path: path.to_path_buf(), source })
    }

    /// Converts into the model configuration; `path` is only used in error messages.
    pub fn to_config(&self, path: &Path) -> Result<LlamaConfig, LlmError> {
        let err = |key: &str, message: String| LlmError::Config {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let family = match self.model_type.as_str() {
            "llama" => LlmFamily::Llama,
            "qwen2" => LlmFamily::Qwen2,
            other => {
                return Err(LlmError::UnsupportedModelType {
                    path: path.to_path_buf(),
                    found: other.to_string(),
                })
            }
        };
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(err("hidden_act", format!("`{act}` is not supported (only silu)")));
            }
        }
        if self.use_sliding_window == Some(true) {
            return Err(err("use_sliding_window", "sliding-window attention is not supported".into()));
        }
        if let Some(f) = self.partial_rotary_factor {
            if f != 1.0 {
                return Err(err("partial_rotary_factor", format!("{f} is not supported (only 1.0)")));
            }
        }
        let heads = self.num_attention_heads;
        let kv_heads = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(err(
                "num_key_value_heads",
                format!("{kv_heads} does not divide num_attention_heads = {heads}"),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None => {
                if self.hidden_size % heads != 0 {
                    return Err(err(
                        "head_dim",
                        format!("absent and hidden_size {} is not divisible by {heads} heads", self.hidden_size),
                    ));
                }
                self.hidden_size / heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(err("head_dim", format!("{head_dim} is odd; RoPE needs an even head width")));
        }
        let (rope_theta, rope_scaling) = self.rope(path)?;
        let attention_bias = self.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            LlmFamily::Llama => (attention_bias, attention_bias),
            LlmFamily::Qwen2 => (true, false),
        };
        Ok(LlamaConfig {
            family,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings.unwrap_or(2048),
            qkv_bias,
            o_bias,
            mlp_bias: self.mlp_bias.unwrap_or(false),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            bos_token_id: token_ids(&self.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&self.eos_token_id),
            pad_token_id: token_ids(&self.pad_token_id).first().copied(),
        })
    }

    /// RoPE base and scaling from `rope_parameters` (transformers 5) or the older top-level
    /// `rope_theta` + `rope_scaling`.
    fn rope(&self, path: &Path) -> Result<(f64, RopeScaling), LlmError> {
        let params = self.rope_parameters.as_ref().filter(|v| !v.is_null());
        let scaling = self.rope_scaling.as_ref().filter(|v| !v.is_null());
        let (key, block) = match (params, scaling) {
            (Some(p), _) => ("rope_parameters", Some(p)),
            (None, Some(s)) => ("rope_scaling", Some(s)),
            (None, None) => ("rope_theta", None),
        };
        let err = |sub: &str, message: String| LlmError::Config {
            path: path.to_path_buf(),
            key: if sub.is_empty() { key.to_string() } else { format!("{key}.{sub}") },
            message,
        };
        let get_f = |name: &str| -> Option<f64> { block.and_then(|b| b.get(name)).and_then(Value::as_f64) };
        let theta = get_f("rope_theta").or(self.rope_theta).unwrap_or(10000.0);
        let Some(block) = block else {
            return Ok((theta, RopeScaling::None));
        };
        let kind = block
            .get("rope_type")
            .or_else(|| block.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let need = |name: &str| get_f(name).ok_or_else(|| err(name, format!("required for rope_type `{kind}`")));
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
            },
            other => {
                return Err(err(
                    "rope_type",
                    format!("`{other}` is not supported (supported: default, linear, llama3)"),
                ))
            }
        };
        Ok((theta, scaling))
    }
}

/// A token id field may be absent, null, a number or a list of numbers.
fn token_ids(value: &Option<Value>) -> Vec<u32> {
    match value {
        Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_u64).map(|v| v as u32).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LlamaConfig, LlmError> {
        let wire: HfLlmConfig = serde_json::from_str(json).map_err(|source| LlmError::Json {
            path: "config.json".into(),
            source,
        })?;
        wire.to_config(Path::new("config.json"))
    }

    const BASE: &str = r#""vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32"#;

    #[test]
    fn vicuna_style_top_level_theta() {
        let c = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_theta": 10000.0, "rope_scaling": null,
            "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}}"#
        ))
        .unwrap();
        assert_eq!(c, LlamaConfig::vicuna_7b());
    }

    #[test]
    fn theta_under_rope_parameters_and_llama3() {
        let c = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "num_key_value_heads": 8, "eos_token_id": [128001, 128009],
            "rope_parameters": {{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.eos_token_ids, vec![128001, 128009]);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { original_max_position_embeddings: 8192, .. }));
    }

    #[test]
    fn old_style_linear_scaling() {
        let c = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"type": "linear", "factor": 4.0}}}}"#
        ))
        .unwrap();
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 4.0 });
    }

    #[test]
    fn sub_config_takes_the_text_model_class_defaults() {
        let sub = |json: &str| {
            let value: Value = serde_json::from_str(json).unwrap();
            HfLlmConfig::from_sub_config(&value, Path::new("config.json"))?.to_config(Path::new("config.json"))
        };
        let c = sub(r#"{"vocab_size": 32064, "rms_norm_eps": 1e-5}"#).unwrap();
        assert_eq!((c.family, c.vocab_size, c.hidden_size, c.num_hidden_layers), (LlmFamily::Llama, 32064, 4096, 32));
        assert_eq!((c.num_key_value_heads, c.max_position_embeddings, c.bos_token_id), (32, 2048, Some(1)));
        let c = sub(r#"{"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}"#).unwrap();
        assert_eq!((c.family, c.vocab_size, c.intermediate_size, c.max_position_embeddings), (LlmFamily::Qwen2, 151936, 22016, 32768));
        assert!(sub("3").unwrap_err().to_string().contains("text_config"));
    }

    #[test]
    fn qwen2_has_qkv_bias() {
        let c = parse(&format!(r#"{{"model_type": "qwen2", {BASE}, "tie_word_embeddings": true}}"#)).unwrap();
        assert!(c.qkv_bias && !c.o_bias && c.tie_word_embeddings);
    }

    #[test]
    fn unsupported_model_type_and_rope_are_named() {
        let e = parse(&format!(r#"{{"model_type": "mistral", {BASE}}}"#)).unwrap_err();
        assert!(e.to_string().contains("unsupported model_type `mistral`"), "{e}");
        let e = parse(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"type": "yarn", "factor": 4.0}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("rope_scaling.rope_type"), "{e}");
        let e = parse(&format!(r#"{{"model_type": "llama", {BASE}, "num_key_value_heads": 5}}"#)).unwrap_err();
        assert!(e.to_string().contains("num_key_value_heads"), "{e}");
    }
}
