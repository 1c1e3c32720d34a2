//! `config.json` as Hugging Face writes it (a `CLIPVisionConfig`, or a `CLIPConfig` holding one
//! under `vision_config`), read as a plain serde struct and converted explicitly.

use std::path::Path;

use serde::Deserialize;

use crate::config::{ClipVisionConfig, HiddenAct};
use crate::error::{Result, VisionError};

/// The vision fields of a `CLIPVisionConfig`. Absent fields take transformers' defaults
/// (`configuration_clip.py`): older Hub configs only list what differs from them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WireVisionConfig {
    pub model_type: Option<String>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_channels: Option<usize>,
    pub image_size: Option<SizeOrPair>,
    pub patch_size: Option<SizeOrPair>,
    pub hidden_act: Option<String>,
    pub layer_norm_eps: Option<f64>,
}

/// transformers 5 allows `image_size`/`patch_size` as an int or an `[h, w]` pair.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum SizeOrPair {
    One(usize),
    Pair([usize; 2]),
}

/// The top level of `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireConfig {
    pub model_type: Option<String>,
    pub vision_config: Option<WireVisionConfig>,
    #[serde(flatten)]
    pub top: WireVisionConfig,
}

impl WireConfig {
    /// The vision tower's config, or why this file does not describe one.
    pub fn into_vision_config(self, path: &Path) -> Result<ClipVisionConfig> {
        let model_type = self.model_type.clone().unwrap_or_default();
        let wire = match model_type.as_str() {
            "clip_vision_model" => self.top,
            "clip" => self.vision_config.ok_or_else(|| VisionError::Config {
                path: path.to_path_buf(),
                message: "model_type \"clip\" without a vision_config".to_string(),
            })?,
            _ => {
                return Err(VisionError::UnsupportedModelType {
                    path: path.to_path_buf(),
                    found: self.model_type.unwrap_or_else(|| "(none)".to_string()),
                })
            }
        };
        wire.into_config(path)
    }
}

impl WireVisionConfig {
    fn into_config(self, path: &Path) -> Result<ClipVisionConfig> {
        let square = |field: &'static str, v: Option<SizeOrPair>, default: usize| match v {
            None => Ok(default),
            Some(SizeOrPair::One(n)) => Ok(n),
            Some(SizeOrPair::Pair([h, w])) if h == w => Ok(h),
            Some(SizeOrPair::Pair([h, w])) => Err(VisionError::UnsupportedConfig {
                path: path.to_path_buf(),
                field,
                value: format!("[{h}, {w}]"),
                reason: "only square sizes are supported",
            }),
        };
        let hidden_act = match self.hidden_act.as_deref().unwrap_or("quick_gelu") {
            "quick_gelu" => HiddenAct::QuickGelu,
            "gelu" => HiddenAct::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => HiddenAct::GeluTanh,
            other => {
                return Err(VisionError::UnsupportedConfig {
                    path: path.to_path_buf(),
                    field: "hidden_act",
                    value: other.to_string(),
                    reason: "supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh",
                })
            }
        };
        let config = ClipVisionConfig {
            image_size: square("image_size", self.image_size, 224)?,
            patch_size: square("patch_size", self.patch_size, 32)?,
            hidden_size: self.hidden_size.unwrap_or(768),
            intermediate_size: self.intermediate_size.unwrap_or(3072),
            num_hidden_layers: self.num_hidden_layers.unwrap_or(12),
            num_attention_heads: self.num_attention_heads.unwrap_or(12),
            num_channels: self.num_channels.unwrap_or(3),
            layer_norm_eps: self.layer_norm_eps.unwrap_or(1e-5),
            hidden_act,
        };
        config.check().map_err(|message| VisionError::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }
}

/// Reads a `config.json` (a `CLIPVisionConfig` or a `CLIPConfig`) into a [`ClipVisionConfig`].
pub fn read_config_json(path: &Path) -> Result<ClipVisionConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let wire: WireConfig = serde_json::from_str(&text).map_err(|e| VisionError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    wire.into_vision_config(path)
}

/// Reads `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<ClipVisionConfig> {
    read_config_json(&dir.join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ClipVisionConfig> {
        let wire: WireConfig = serde_json::from_str(json).unwrap();
        wire.into_vision_config(Path::new("config.json"))
    }

    #[test]
    fn clip_model_config_reads_its_vision_config_with_defaults() {
        // The shape of openai/clip-vit-large-patch14-336's config.json (abridged).
        let c = parse(
            r#"{"model_type": "clip", "projection_dim": 768,
                "text_config": {"hidden_size": 768},
                "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                                  "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14}}"#,
        )
        .unwrap();
        assert_eq!(c, ClipVisionConfig::vit_l14_336());
    }

    #[test]
    fn vision_config_pairs_and_activations() {
        let c = parse(
            r#"{"model_type": "clip_vision_model", "image_size": [28, 28], "patch_size": 7,
                "hidden_size": 24, "num_attention_heads": 3, "num_hidden_layers": 2,
                "intermediate_size": 40, "hidden_act": "gelu", "layer_norm_eps": 1e-6}"#,
        )
        .unwrap();
        assert_eq!(c.image_size, 28);
        assert_eq!(c.hidden_act, HiddenAct::Gelu);
        assert_eq!(c.layer_norm_eps, 1e-6);
    }

    #[test]
    fn unsupported_model_type_and_activation_are_errors() {
        let e = parse(r#"{"model_type": "siglip_vision_model"}"#).unwrap_err();
        assert!(e.to_string().contains("siglip_vision_model"), "{e}");
        let e = parse(r#"{"model_type": "clip_vision_model", "hidden_act": "relu"}"#).unwrap_err();
        assert!(e.to_string().contains("relu"), "{e}");
        let e = parse(r#"{"model_type": "clip_vision_model", "hidden_size": 30}"#).unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
    }
}
