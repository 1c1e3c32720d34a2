//! The Hugging Face `config.json` of a [`ClipVisionConfig`], as transformers writes it for a
//! `CLIPVisionModel` (and, without `architectures`, as a LLaVA config's `vision_config`). The
//! inverse of `wire.rs`.

use serde_json::{json, Value};

use crate::config::{ClipVisionConfig, HiddenAct};

/// transformers' name of the activation (`ACT2FN` key).
pub fn hidden_act_name(act: HiddenAct) -> &'static str {
    match act {
        HiddenAct::QuickGelu => "quick_gelu",
        HiddenAct::Gelu => "gelu",
        HiddenAct::GeluTanh => "gelu_pytorch_tanh",
    }
}

/// `CLIPVisionConfig` as `CLIPVisionModel.save_pretrained` writes it (float32 weights).
pub fn hf_config_json(c: &ClipVisionConfig) -> Value {
    json!({
        "architectures": ["CLIPVisionModel"],
        "model_type": "clip_vision_model",
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "hidden_act": hidden_act_name(c.hidden_act),
        "hidden_size": c.hidden_size,
        "image_size": c.image_size,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size,
        "layer_norm_eps": c.layer_norm_eps,
        "num_attention_heads": c.num_attention_heads,
        "num_channels": c.num_channels,
        "num_hidden_layers": c.num_hidden_layers,
        "patch_size": c.patch_size,
        "projection_dim": c.hidden_size,
        "dtype": "float32"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_tower_config_round_trips_through_the_reader() {
        let c = ClipVisionConfig::tiny();
        let v = hf_config_json(&c);
        assert_eq!(v["model_type"], "clip_vision_model");
        assert_eq!(v["hidden_act"], "quick_gelu");
        let wire: crate::WireConfig = serde_json::from_value(v).unwrap();
        let back = wire.into_vision_config("config.json".as_ref()).unwrap();
        assert_eq!(back, c);
    }
}
