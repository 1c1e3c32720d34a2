//! The Hugging Face `config.json` of a [`LlamaConfig`], as transformers 5 writes it for
//! `LlamaForCausalLM` / `Qwen2ForCausalLM` (`rope_parameters` instead of the older top-level
//! `rope_theta` + `rope_scaling`; `load.rs` reads both). The inverse of `wire.rs`.

use serde_json::{json, Value};

use crate::config::{LlamaConfig, LlmFamily, RopeScaling};

/// transformers 5's `rope_parameters` block.
fn rope_parameters(c: &LlamaConfig) -> Value {
    match c.rope_scaling {
        RopeScaling::None => json!({"rope_type": "default", "rope_theta": c.rope_theta}),
        RopeScaling::Linear { factor } => {
            json!({"rope_type": "linear", "rope_theta": c.rope_theta, "factor": factor})
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({
            "rope_type": "llama3",
            "rope_theta": c.rope_theta,
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
    }
}

/// Why `c` has no exact Hugging Face config, if it has none: transformers' Llama puts one
/// `attention_bias` on q, k, v and o alike; Qwen2 has q/k/v biases and no o/MLP biases.
pub fn hf_config_check(c: &LlamaConfig) -> Result<(), String> {
    match c.family {
        LlmFamily::Llama if c.qkv_bias != c.o_bias => Err(format!(
            "a Llama with q/k/v biases {} but o_proj bias {} has no transformers config (`attention_bias` covers all four)",
            c.qkv_bias, c.o_bias
        )),
        LlmFamily::Qwen2 if !c.qkv_bias || c.o_bias || c.mlp_bias => Err(format!(
            "a Qwen2 has q/k/v biases only; this one has qkv_bias {}, o_bias {}, mlp_bias {}",
            c.qkv_bias, c.o_bias, c.mlp_bias
        )),
        _ => Ok(()),
    }
}

/// `config.json` for `c` (check it first with [`hf_config_check`]): `model_type` llama or qwen2
/// by family, float32 weights.
pub fn hf_config_json(c: &LlamaConfig) -> Value {
    let eos = match c.eos_token_ids.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    };
    let mut v = json!({
        "attention_dropout": 0.0,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": c.pad_token_id,
        "hidden_act": "silu",
        "hidden_size": c.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": c.intermediate_size,
        "max_position_embeddings": c.max_position_embeddings,
        "num_attention_heads": c.num_attention_heads,
        "num_hidden_layers": c.num_hidden_layers,
        "num_key_value_heads": c.num_key_value_heads,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_parameters": rope_parameters(c),
        "tie_word_embeddings": c.tie_word_embeddings,
        "dtype": "float32",
        "use_cache": true,
        "vocab_size": c.vocab_size,
    });
    let extra = match c.family {
        LlmFamily::Llama => json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "attention_bias": c.qkv_bias,
            "mlp_bias": c.mlp_bias,
            "head_dim": c.head_dim,
            "pretraining_tp": 1,
        }),
        LlmFamily::Qwen2 => json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "use_sliding_window": false,
            "sliding_window": null,
            "max_window_layers": c.num_hidden_layers,
        }),
    };
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_and_qwen2_configs_name_their_family_and_rope() {
        let mut c = LlamaConfig::tiny();
        let v = hf_config_json(&c);
        assert_eq!(v["model_type"], "llama");
        assert_eq!(v["rope_parameters"]["rope_type"], "default");
        assert_eq!(v["vocab_size"], 1024);
        assert_eq!(v["eos_token_id"], 2);
        c.family = LlmFamily::Qwen2;
        assert!(
            hf_config_check(&c).is_err(),
            "a Qwen2 without q/k/v biases has no config"
        );
        c.qkv_bias = true;
        c.tie_word_embeddings = true;
        c.rope_scaling = RopeScaling::Linear { factor: 4.0 };
        hf_config_check(&c).unwrap();
        let v = hf_config_json(&c);
        assert_eq!(v["model_type"], "qwen2");
        assert_eq!(v["tie_word_embeddings"], true);
        assert_eq!(v["rope_parameters"]["factor"], 4.0);
    }
}
