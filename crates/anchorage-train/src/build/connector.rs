//! `[connector]` (a [`ConnectorSection`]) → [`ConnectorConfig`] of anchorage-connectors.
//!
//! The recipe holds only what a researcher chooses (kind, depths, query counts); the widths come
//! from the towers: [`ConnectorDims`].

use anchorage_connectors::perceiver::PerceiverConfig;
use anchorage_connectors::{AnchorFormerConfig, CAbstractorConfig, ConnectorConfig, MlpActivation, MlpConfig, ResamplerConfig};

use crate::recipe::{ConnectorSection, ResamplerVariant};

/// Sizes fixed by the vision tower and the LLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorDims {
    /// Vision hidden size (1024 for CLIP ViT-L).
    pub d_vision: usize,
    /// LLM hidden size (4096 for 7B).
    pub d_llm: usize,
    /// Vision tokens the connector receives (576 patches, or 577 with CLS); sizes the
    /// C-Abstractor's position embedding.
    pub vision_tokens: usize,
}

/// Builds the connector config the recipe asks for. The section is assumed checked
/// ([`ConnectorSection::check`]); sizes it cannot know come from `dims`.
pub fn connector_config(section: &ConnectorSection, dims: ConnectorDims) -> ConnectorConfig {
    let ConnectorDims { d_vision, d_llm, vision_tokens } = dims;
    match section {
        ConnectorSection::Mlp { depth, .. } => {
            ConnectorConfig::Mlp(MlpConfig::new(d_vision, d_llm).with_depth(*depth).with_activation(MlpActivation::Gelu))
        }
        ConnectorSection::CAbstractor { depth, mlp_depth, hidden_size, num_queries, pos_emb, prenorm, .. } => {
            // The grid is the patches: with CLS included (577) the position embedding covers 576.
            let square = |n: usize| {
                let s = (n as f64).sqrt().round() as usize;
                s * s == n
            };
            let grid = if !square(vision_tokens) && vision_tokens > 1 && square(vision_tokens - 1) { vision_tokens - 1 } else { vision_tokens };
            ConnectorConfig::CAbstractor(
                CAbstractorConfig::new(d_vision, d_llm, grid)
                    .with_depth(*depth)
                    .with_mlp_depth(*mlp_depth)
                    .with_hidden_size(*hidden_size)
                    .with_num_queries(*num_queries)
                    .with_pos_emb(*pos_emb)
                    .with_prenorm(*prenorm),
            )
        }
        ConnectorSection::Resampler { variant, depth, heads, dim_head, num_latents, ff_mult, projector_depth, .. } => {
            let perceiver = PerceiverConfig::new(d_vision)
                .with_depth(*depth)
                .with_heads(*heads)
                .with_dim_head(*dim_head)
                .with_num_latents(*num_latents)
                .with_ff_mult(*ff_mult)
                .with_kv_includes_latents(matches!(variant, ResamplerVariant::OpenFlamingo));
            ConnectorConfig::Resampler(ResamplerConfig::new(perceiver, d_llm).with_projector_depth(*projector_depth))
        }
        ConnectorSection::AnchorFormer { anchors, depth, heads, dim_head, ff_mult, projector_depth, .. } => {
            // AcFormer keeps the resampler's 144 learnable latents (unused) in its weights.
            let perceiver = PerceiverConfig::new(d_vision)
                .with_depth(*depth)
                .with_heads(*heads)
                .with_dim_head(*dim_head)
                .with_num_latents(144)
                .with_ff_mult(*ff_mult)
                .with_kv_includes_latents(false);
            ConnectorConfig::AnchorFormer(
                AnchorFormerConfig::new(perceiver, d_llm).with_anchors(*anchors).with_projector_depth(*projector_depth),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIP_L_7B: ConnectorDims = ConnectorDims { d_vision: 1024, d_llm: 4096, vision_tokens: 576 };

    fn section(toml_text: &str) -> ConnectorSection {
        #[derive(serde::Deserialize)]
        struct Wrap {
            connector: ConnectorSection,
        }
        toml::from_str::<Wrap>(toml_text).unwrap().connector
    }

    #[test]
    fn recipe_defaults_become_the_published_sizes() {
        let c = connector_config(&section("[connector]\nkind = \"anchor_former\""), CLIP_L_7B);
        assert_eq!(c, ConnectorConfig::AnchorFormer(AnchorFormerConfig::anchors_145()));
        assert_eq!(c.output_tokens(577), 145);
        let c = connector_config(&section("[connector]\nkind = \"anchor_former\"\nanchors = 257"), CLIP_L_7B);
        assert_eq!(c, ConnectorConfig::AnchorFormer(AnchorFormerConfig::anchors_257()));
        let c = connector_config(&section("[connector]\nkind = \"c_abstractor\""), CLIP_L_7B);
        assert_eq!(c, ConnectorConfig::CAbstractor(CAbstractorConfig::honeybee_m144()));
        let c = connector_config(&section("[connector]\nkind = \"resampler\""), CLIP_L_7B);
        assert_eq!(c, ConnectorConfig::Resampler(ResamplerConfig::acformer_baseline()));
        let c = connector_config(&section("[connector]\nkind = \"resampler\"\nvariant = \"open_flamingo\""), CLIP_L_7B);
        match c {
            ConnectorConfig::Resampler(r) => assert!(r.perceiver.kv_includes_latents),
            other => panic!("{other:?}"),
        }
        let c = connector_config(&section("[connector]\nkind = \"mlp\""), CLIP_L_7B);
        assert_eq!(c, ConnectorConfig::Mlp(MlpConfig::new(1024, 4096)));
        assert_eq!(c.output_tokens(576), 576);
    }

    #[test]
    fn every_repository_recipe_builds_a_connector_config() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes");
        let mut seen = 0;
        for stage in ["pretrain", "ift", "tiny"] {
            let Ok(dir) = std::fs::read_dir(root.join(stage)) else { continue };
            for entry in dir.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let value: toml::Value = toml::from_str(&text).unwrap();
                let conn = value.get("connector").unwrap().clone();
                let wrapped = toml::to_string(&toml::value::Table::from_iter([("connector".to_string(), conn)])).unwrap();
                let c = connector_config(&section(&wrapped), CLIP_L_7B);
                assert_eq!(c.dims(), (1024, 4096), "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 5, "found {seen} recipes");
    }
}
