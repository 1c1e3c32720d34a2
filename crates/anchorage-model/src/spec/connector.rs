//! `[connector]`: the connector a researcher chooses (kind, depths, query counts) and, with the
//! widths the towers fix ([`ConnectorDims`]), the [`ConnectorConfig`] of anchorage-connectors.

use std::path::{Path, PathBuf};

use anchorage_connectors::perceiver::PerceiverConfig;
use anchorage_connectors::{AnchorFormerConfig, CAbstractorConfig, ConnectorConfig, MlpActivation, MlpConfig, ResamplerConfig};
use serde::{Deserialize, Serialize};

use super::ProjectorType;

/// `[connector]`: the trainable vision-language connector, tagged by `kind`.
///
/// Sizes default to the published configurations (LLaVA's `build_vision_projector`, Honeybee's C-Abstractor, open_flamingo's PerceiverResampler, AcFormer's `builder.py`). `init` names a
/// connector exported by `train export` (or LLaVA's `mm_projector.bin`) to start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectorSection {
    /// LLaVA's projector (exact erf GELU). Name it as LLaVA's `mm_projector_type` does
    /// (`projector_type = "linear" | "mlp1x_gelu" | "mlp2x_gelu" | ...`), or by `depth` alone
    /// (1 is `linear`, N ≥ 2 is `mlpNx_gelu`; 2 when neither is given).
    Mlp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        projector_type: Option<ProjectorType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init: Option<PathBuf>,
    },
    /// Honeybee's C-Abstractor: RegNet stages, adaptive pooling to a square grid, MLP readout.
    CAbstractor {
        /// RegNet bottleneck blocks per stage.
        #[serde(default = "three")]
        depth: usize,
        /// Readout MLP depth.
        #[serde(default = "two")]
        mlp_depth: usize,
        /// Channels inside the stages (Honeybee: 1024).
        #[serde(default = "d1024")]
        hidden_size: usize,
        /// Output tokens; must be a square (144 = 12×12).
        #[serde(default = "q144")]
        num_queries: usize,
        /// Learned position embedding added to the input tokens.
        #[serde(default = "yes")]
        pos_emb: bool,
        /// LayerNorm on the input tokens.
        #[serde(default)]
        prenorm: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init: Option<PathBuf>,
    },
    /// Perceiver Resampler with learnable latents, followed by an MLP projector to the LLM width.
    Resampler {
        #[serde(default = "acformer")]
        variant: ResamplerVariant,
        #[serde(default = "six")]
        depth: usize,
        #[serde(default = "eight")]
        heads: usize,
        #[serde(default = "d64")]
        dim_head: usize,
        #[serde(default = "q144")]
        num_latents: usize,
        #[serde(default = "four")]
        ff_mult: usize,
        /// Depth of the Linear-GELU-Linear projector after the resampler. 0 is open_flamingo's
        /// bare resampler (keys `perceiver.*`): the output width is the vision width, which the
        /// LLM's must then equal.
        #[serde(default = "two")]
        projector_depth: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init: Option<PathBuf>,
    },
    /// AcFormer's Anchor Former: anchors chosen from the select layer's CLS attention are the
    /// queries of a resampler over all vision tokens (CLS included), then an MLP projector.
    AnchorFormer {
        /// Anchors including CLS: `heads × per-head budget + 1` (145 = 16×9+1, 257 = 16×16+1).
        #[serde(default = "a145")]
        anchors: usize,
        #[serde(default = "six")]
        depth: usize,
        #[serde(default = "eight")]
        heads: usize,
        #[serde(default = "d64")]
        dim_head: usize,
        #[serde(default = "four")]
        ff_mult: usize,
        #[serde(default = "two")]
        projector_depth: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init: Option<PathBuf>,
    },
}

/// Which Perceiver Resampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResamplerVariant {
    /// open_flamingo: keys/values are the media tokens followed by the latents.
    OpenFlamingo,
    /// AcFormer's baseline: keys/values are the media tokens only.
    Acformer,
}

fn two() -> usize {
    2
}
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn six() -> usize {
    6
}
fn eight() -> usize {
    8
}
fn d64() -> usize {
    64
}
fn d1024() -> usize {
    1024
}
fn q144() -> usize {
    144
}
fn a145() -> usize {
    145
}
fn yes() -> bool {
    true
}
fn acformer() -> ResamplerVariant {
    ResamplerVariant::Acformer
}

impl ConnectorSection {
    /// The recipe's name for this kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Mlp { .. } => "mlp",
            Self::CAbstractor { .. } => "c_abstractor",
            Self::Resampler { .. } => "resampler",
            Self::AnchorFormer { .. } => "anchor_former",
        }
    }

    /// The exported connector to initialise from, if any.
    pub fn init(&self) -> Option<&Path> {
        match self {
            Self::Mlp { init, .. }
            | Self::CAbstractor { init, .. }
            | Self::Resampler { init, .. }
            | Self::AnchorFormer { init, .. } => init.as_deref(),
        }
    }

    /// Visual tokens the connector hands the LLM per image, given the vision tokens it receives.
    pub fn output_tokens(&self, vision_tokens: usize) -> usize {
        match self {
            Self::Mlp { .. } => vision_tokens,
            Self::CAbstractor { num_queries, .. } => *num_queries,
            Self::Resampler { num_latents, .. } => *num_latents,
            Self::AnchorFormer { anchors, .. } => *anchors,
        }
    }

    /// An MLP's (linear layers, whether its single layer sits in a one-entry `nn.Sequential`:
    /// `mlp1x_gelu`); (0, false) for other kinds. Deeper MLPs are always Sequentials.
    pub fn mlp_layout(&self) -> (usize, bool) {
        match self {
            Self::Mlp { projector_type: Some(p), .. } => (p.depth(), *p == ProjectorType::MlpGelu(1)),
            Self::Mlp { projector_type: None, depth, .. } => (depth.unwrap_or(2), false),
            _ => (0, false),
        }
    }

    /// Checks sizes; returns (key, message) for the first problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err((key, "must be at least 1".to_string()))
            } else {
                Ok(())
            }
        };
        match self {
            Self::Mlp { projector_type, depth, .. } => {
                if let (Some(p), Some(d)) = (projector_type, depth) {
                    if p.depth() != *d {
                        let name = String::from(*p);
                        return Err(("depth", format!("{d} contradicts projector_type = \"{name}\" (a {}-layer projector); give one of them", p.depth())));
                    }
                }
                positive("depth", self.mlp_layout().0)
            }
            Self::CAbstractor { num_queries, hidden_size, .. } => {
                positive("hidden_size", *hidden_size)?;
                let side = (*num_queries as f64).sqrt().round() as usize;
                if side == 0 || side * side != *num_queries {
                    return Err(("num_queries", format!("{num_queries} is not a square number (e.g. 64, 144, 256)")));
                }
                Ok(())
            }
            Self::Resampler { depth, heads, dim_head, num_latents, ff_mult, projector_depth, .. } => {
                positive("depth", *depth)?;
                positive("heads", *heads)?;
                positive("dim_head", *dim_head)?;
                positive("num_latents", *num_latents)?;
                positive("ff_mult", *ff_mult)?;
                // projector_depth 0 is open_flamingo's resampler without projector.
                let _ = projector_depth;
                Ok(())
            }
            Self::AnchorFormer { anchors, depth, heads, dim_head, ff_mult, projector_depth, .. } => {
                if *anchors < 2 {
                    return Err(("anchors", format!("{anchors} must be at least 2 (CLS plus one anchor)")));
                }
                positive("depth", *depth)?;
                positive("heads", *heads)?;
                positive("dim_head", *dim_head)?;
                positive("ff_mult", *ff_mult)?;
                positive("projector_depth", *projector_depth)
            }
        }
    }
}

impl ConnectorSection {
    /// Checks what needs the towers' widths; returns (key, message) for the first problem.
    pub fn check_dims(&self, dims: ConnectorDims) -> Result<(), (&'static str, String)> {
        match self {
            Self::Resampler { projector_depth: 0, .. } if dims.d_vision != dims.d_llm => Err((
                "projector_depth",
                format!(
                    "0 (open_flamingo's resampler, no projector) hands the LLM the vision width {}, but the LLM's hidden size is {}; \
                     use projector_depth ≥ 1 to project, or an LLM of width {}",
                    dims.d_vision, dims.d_llm, dims.d_vision
                ),
            )),
            _ => Ok(()),
        }
    }
}

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
        ConnectorSection::Mlp { .. } => {
            let (depth, sequential) = section.mlp_layout();
            ConnectorConfig::Mlp(
                MlpConfig::new(d_vision, d_llm).with_depth(depth).with_activation(MlpActivation::Gelu).with_sequential(sequential),
            )
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
    fn llava_projector_types_name_depth_and_layout() {
        let mlp = |t: &str| match connector_config(&section(t), CLIP_L_7B) {
            ConnectorConfig::Mlp(c) => (c.depth, c.sequential),
            other => panic!("{other:?}"),
        };
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\nprojector_type = \"linear\""), (1, false));
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp1x_gelu\""), (1, true));
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp2x_gelu\""), (2, false));
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp5x_gelu\""), (5, false));
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\ndepth = 1"), (1, false));
        assert_eq!(mlp("[connector]\nkind = \"mlp\"\ndepth = 3"), (3, false));
        let s = section("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp1x_gelu\"");
        let round: toml::Value = toml::Value::try_from(&s).unwrap();
        assert_eq!(round.get("projector_type").and_then(|v| v.as_str()), Some("mlp1x_gelu"));
        assert_eq!(section("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp2x_gelu\"\ndepth = 2").check(), Ok(()));
        let (key, msg) = section("[connector]\nkind = \"mlp\"\nprojector_type = \"mlp1x_gelu\"\ndepth = 2").check().unwrap_err();
        assert_eq!(key, "depth", "{msg}");
        #[derive(serde::Deserialize, Debug)]
        struct Wrap {
            #[allow(dead_code)]
            connector: ConnectorSection,
        }
        for bad in ["mlp0x_gelu", "mlp2x_relu", "identity"] {
            let err = toml::from_str::<Wrap>(&format!("[connector]\nkind = \"mlp\"\nprojector_type = \"{bad}\"")).unwrap_err();
            assert!(err.to_string().contains("projector_type"), "{err}");
        }
    }

    #[test]
    fn open_flamingo_resampler_without_projector_keeps_the_vision_width() {
        let s = section("[connector]\nkind = \"resampler\"\nvariant = \"open_flamingo\"\nprojector_depth = 0");
        assert_eq!(s.check(), Ok(()));
        let same = ConnectorDims { d_vision: 1024, d_llm: 1024, vision_tokens: 576 };
        let c = connector_config(&s, same);
        assert_eq!(c.dims(), (1024, 1024));
        assert!(c.init::<burn::backend::Flex>(&Default::default()).is_ok());
        let err = connector_config(&s, CLIP_L_7B).init::<burn::backend::Flex>(&Default::default()).unwrap_err();
        assert!(err.to_string().contains("projector_depth") && err.to_string().contains("1024"), "{err}");
        assert_eq!(s.check_dims(same), Ok(()));
        let (key, msg) = s.check_dims(CLIP_L_7B).unwrap_err();
        assert_eq!(key, "projector_depth");
        assert!(msg.contains("1024") && msg.contains("4096"), "{msg}");
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
