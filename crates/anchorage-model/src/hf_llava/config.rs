//! `config.json` of a llava-hf checkpoint (`LlavaConfig`, `LlavaNextConfig`), in transformers 4
//! or 5 style, with transformers 5.23's defaults for what it leaves out (transformers
//! `models/llava/configuration_llava.py`, `models/llava_next/configuration_llava_next.py`).

use std::path::{Path, PathBuf};

use anchorage_connectors::MlpActivation;
use anchorage_llm::{HfLlmConfig, LlamaConfig};
use anchorage_vision::{ClipVisionConfig, WireConfig, WireVisionConfig};
use serde::Deserialize;
use serde_json::Value;

use super::HfLlavaError;

/// Which of the two architectures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlavaKind {
    /// `LlavaForConditionalGeneration`: one square image, its patch features projected.
    Llava,
    /// `LlavaNextForConditionalGeneration`: AnyRes tiles, packed with `image_newline` rows.
    LlavaNext {
        /// `image_grid_pinpoints` as `(height, width)`.
        grid_pinpoints: Vec<(usize, usize)>,
    },
}

/// `vision_feature_select_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectStrategy {
    /// `default`: the CLS token is dropped.
    Default,
    /// `full`: every token is kept.
    Full,
}

/// The parts of the config that shape the model.
#[derive(Debug, Clone, PartialEq)]
pub struct HfLlavaConfig {
    pub kind: LlavaKind,
    pub vision: ClipVisionConfig,
    /// The text model; `tie_word_embeddings` is the effective one (top level or text_config).
    pub text: LlamaConfig,
    /// `image_token_index` / `image_token_id`.
    pub image_token_id: i64,
    /// `vision_feature_layer`: one `hidden_states` index, or several whose features are
    /// concatenated on the feature dim, in this order.
    pub vision_feature_layers: Vec<i64>,
    pub select_strategy: SelectStrategy,
    pub projector_act: MlpActivation,
    pub projector_bias: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LayerField {
    One(i64),
    Many(Vec<i64>),
}

/// `config.json` as written; every field optional, defaults applied in [`HfLlavaConfig::read`].
#[derive(Debug, Deserialize)]
struct Wire {
    model_type: Option<String>,
    vision_config: Option<Value>,
    text_config: Option<Value>,
    image_token_index: Option<i64>,
    image_token_id: Option<i64>,
    vision_feature_layer: Option<LayerField>,
    vision_feature_select_strategy: Option<String>,
    projector_hidden_act: Option<String>,
    multimodal_projector_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    image_grid_pinpoints: Option<Vec<Vec<usize>>>,
}

/// `LlavaNextConfig`'s default `image_grid_pinpoints`.
const DEFAULT_PINPOINTS: [(usize, usize); 5] =
    [(336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008)];

impl HfLlavaConfig {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self, HfLlavaError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| HfLlavaError::Io {
            path: path.clone(),
            source,
        })?;
        let wire: Wire = serde_json::from_str(&text).map_err(|source| HfLlavaError::Json {
            path: path.clone(),
            source,
        })?;
        Self::from_wire(wire, &path)
    }

    fn from_wire(wire: Wire, path: &Path) -> Result<Self, HfLlavaError> {
        let err = |key: &str, message: String| HfLlavaError::Config {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let kind = match wire.model_type.as_deref() {
            Some("llava") => LlavaKind::Llava,
            Some("llava_next") => LlavaKind::LlavaNext {
                grid_pinpoints: pinpoints(wire.image_grid_pinpoints, path)?,
            },
            other => {
                return Err(err(
                    "model_type",
                    format!("{other:?} is not supported (expected \"llava\" or \"llava_next\")"),
                ))
            }
        };
        let vision = vision_config(wire.vision_config, path)?;
        let mut text =
            HfLlmConfig::from_sub_config(wire.text_config.as_ref().unwrap_or(&Value::Null), path)?
                .to_config(path)?;
        // LlavaConfig.__post_init__: tied when the top level or the text model says so.
        text.tie_word_embeddings |= wire.tie_word_embeddings.unwrap_or(false);
        let vision_feature_layers = match wire.vision_feature_layer {
            None => vec![-2],
            Some(LayerField::One(l)) => vec![l],
            Some(LayerField::Many(v)) if v.is_empty() => {
                return Err(err(
                    "vision_feature_layer",
                    "an empty list selects no features".into(),
                ))
            }
            Some(LayerField::Many(v)) => v,
        };
        let states = vision.num_hidden_layers as i64 + 1;
        if let Some(bad) = vision_feature_layers
            .iter()
            .find(|&&l| l >= states || l < -states)
        {
            return Err(err(
                "vision_feature_layer",
                format!("{bad} is out of range: the tower has {} layers, so hidden_states has {states} entries", vision.num_hidden_layers),
            ));
        }
        let select_strategy = match wire
            .vision_feature_select_strategy
            .as_deref()
            .unwrap_or("default")
        {
            "default" => SelectStrategy::Default,
            "full" => SelectStrategy::Full,
            other => {
                return Err(err(
                    "vision_feature_select_strategy",
                    format!("`{other}` is not one of default, full"),
                ))
            }
        };
        let projector_act = match wire.projector_hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => MlpActivation::Gelu,
            "silu" | "swish" => MlpActivation::Silu,
            other => {
                return Err(err(
                    "projector_hidden_act",
                    format!("`{other}` is not supported (supported: gelu, silu)"),
                ))
            }
        };
        Ok(Self {
            kind,
            vision,
            text,
            image_token_id: wire
                .image_token_index
                .or(wire.image_token_id)
                .unwrap_or(32000),
            vision_feature_layers,
            select_strategy,
            projector_act,
            projector_bias: wire.multimodal_projector_bias.unwrap_or(true),
        })
    }

    /// The projector's input width: the tower's width times the number of selected layers.
    pub fn projector_input(&self) -> usize {
        self.vision.hidden_size * self.vision_feature_layers.len()
    }

    /// Feature rows one tile (or the llava image) gives: patches, plus CLS for `full`.
    pub fn tile_tokens(&self) -> usize {
        match self.select_strategy {
            SelectStrategy::Default => self.vision.num_patches(),
            SelectStrategy::Full => self.vision.num_tokens(),
        }
    }
}

/// `vision_config`: absent means LLaVA's tower (`CLIPVisionConfig` with the spec's init kwargs,
/// ViT-L/14 at 336 px); a dict takes `CLIPVisionConfig`'s class defaults for what it omits.
fn vision_config(value: Option<Value>, path: &Path) -> Result<ClipVisionConfig, HfLlavaError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ClipVisionConfig::vit_l14_336());
    };
    let wire: WireVisionConfig =
        serde_json::from_value(value).map_err(|source| HfLlavaError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    match wire.model_type.as_deref() {
        None | Some("clip_vision_model") => {}
        Some(other) => {
            return Err(HfLlavaError::Config {
                path: path.to_path_buf(),
                key: "vision_config.model_type".into(),
                message: format!("`{other}` is not supported (only clip_vision_model)"),
            })
        }
    }
    let top = WireConfig {
        model_type: Some("clip_vision_model".into()),
        vision_config: None,
        top: wire,
    };
    Ok(top.into_vision_config(path)?)
}

fn pinpoints(
    value: Option<Vec<Vec<usize>>>,
    path: &Path,
) -> Result<Vec<(usize, usize)>, HfLlavaError> {
    let Some(list) = value else {
        return Ok(DEFAULT_PINPOINTS.to_vec());
    };
    let bad = |message: String| HfLlavaError::Config {
        path: PathBuf::from(path),
        key: "image_grid_pinpoints".into(),
        message,
    };
    if list.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    list.into_iter()
        .map(|p| match p.as_slice() {
            &[h, w] if h > 0 && w > 0 => Ok((h, w)),
            other => Err(bad(format!(
                "{other:?} is not a [height, width] pair of positive sizes"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HfLlavaConfig, HfLlavaError> {
        let wire: Wire = serde_json::from_str(json).unwrap();
        HfLlavaConfig::from_wire(wire, Path::new("config.json"))
    }

    #[test]
    fn hub_style_config_takes_transformers_defaults() {
        // The shape of llava-hf/llava-1.5-7b-hf's config.json (abridged).
        let c = parse(
            r#"{"model_type": "llava", "image_token_index": 32000, "projector_hidden_act": "gelu",
                "text_config": {"model_type": "llama", "vocab_size": 32064, "rms_norm_eps": 1e-05},
                "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                  "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                  "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
                "vision_feature_layer": -2, "vision_feature_select_strategy": "default"}"#,
        )
        .unwrap();
        assert_eq!(c.kind, LlavaKind::Llava);
        assert_eq!(c.vision, ClipVisionConfig::vit_l14_336());
        assert_eq!(
            (c.text.vocab_size, c.text.hidden_size, c.text.rms_norm_eps),
            (32064, 4096, 1e-5)
        );
        assert_eq!(
            (
                c.image_token_id,
                c.vision_feature_layers.clone(),
                c.projector_bias
            ),
            (32000, vec![-2], true)
        );
        assert_eq!((c.tile_tokens(), c.projector_input()), (576, 1024));
    }

    #[test]
    fn next_defaults_lists_and_ties() {
        let c = parse(
            r#"{"model_type": "llava_next", "image_token_id": 7, "vision_feature_layer": [-3, 1],
                "vision_feature_select_strategy": "full", "multimodal_projector_bias": false,
                "tie_word_embeddings": true, "text_config": {"model_type": "qwen2", "hidden_size": 64,
                "num_attention_heads": 4, "num_key_value_heads": 2,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.kind,
            LlavaKind::LlavaNext {
                grid_pinpoints: DEFAULT_PINPOINTS.to_vec()
            }
        );
        assert!(c.text.tie_word_embeddings && !c.projector_bias);
        assert_eq!((c.image_token_id, c.text.rope_theta), (7, 1e6));
        assert_eq!((c.tile_tokens(), c.projector_input()), (577, 2048));
    }

    #[test]
    fn unsupported_values_name_their_key() {
        for (json, key) in [
            (r#"{"model_type": "llava_onevision"}"#, "model_type"),
            (
                r#"{"model_type": "llava", "vision_feature_layer": 25}"#,
                "vision_feature_layer",
            ),
            (
                r#"{"model_type": "llava", "vision_feature_layer": -26}"#,
                "vision_feature_layer",
            ),
            (
                r#"{"model_type": "llava", "vision_feature_select_strategy": "cls"}"#,
                "vision_feature_select_strategy",
            ),
            (
                r#"{"model_type": "llava", "projector_hidden_act": "relu"}"#,
                "projector_hidden_act",
            ),
            (
                r#"{"model_type": "llava", "vision_config": {"model_type": "siglip_vision_model"}}"#,
                "vision_config.model_type",
            ),
            (
                r#"{"model_type": "llava_next", "image_grid_pinpoints": [[336]]}"#,
                "image_grid_pinpoints",
            ),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(key), "{json}: {e}");
        }
    }
}
