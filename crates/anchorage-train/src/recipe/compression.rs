use serde::{Deserialize, Serialize};

/// `[compression]`: visual-token compression inside the LLM, tagged by `method` (spec §5–7).
///
/// Keep amounts are fractions of the image tokens a sample has, so one compression setting works
/// for every connector (576 MLP tokens, 145 anchors, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum CompressionSection {
    /// Every layer attends to every visual token.
    #[default]
    None,
    /// ACT-IN-LLM: all tokens stay queries; compressed layers see only the kept visual keys/values.
    Act {
        /// Fraction of the LLM's layers (the deepest ones) that carry a compression module.
        #[serde(default = "act_coverage")]
        coverage: f64,
        /// Fraction of visual keys/values kept in each stage, shallow to deep; the compressed layers
        /// are split into this many equal stages. Compression gets heavier with depth.
        #[serde(default = "act_keep")]
        keep_ratios: Vec<f64>,
        #[serde(default = "act_selection")]
        selection: ActSelection,
    },
    /// FastV: after layer `layer`, keep the top image tokens and drop the rest from the sequence.
    Fastv {
        /// K: pruning happens after K layers, scored with layer K-1's attention.
        #[serde(default = "fastv_layer")]
        layer: usize,
        /// Fraction of image tokens kept (1 - R).
        #[serde(default = "half")]
        keep_ratio: f64,
        #[serde(default = "fastv_rule")]
        rule: FastVRule,
    },
    /// HiMAP: shallow pruning at `shallow_layer` by text→image attention, deep pruning at
    /// `deep_layer` by image→image attention.
    Himap {
        #[serde(default = "himap_k1")]
        shallow_layer: usize,
        /// Fraction of the image tokens kept after the shallow rule (288/576 in the release).
        #[serde(default = "half")]
        shallow_keep_ratio: f64,
        #[serde(default = "himap_k2")]
        deep_layer: usize,
        /// Fraction of the original image tokens kept after the deep rule (72/576).
        #[serde(default = "himap_keep2")]
        deep_keep_ratio: f64,
    },
}

/// How ACT-IN-LLM picks the visual keys/values a stage keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActSelection {
    /// Top-k by the previous layer's last-row attention, averaged over heads.
    Attention,
    /// The paper's AvgPool-1D variant: average-pool the visual keys/values (after RoPE) in
    /// `adaptive_avg_pool1d` windows; text keys/values stay as they are.
    AvgPool,
    /// Not in the paper: keep the centre visual token of each of those windows as is.
    UniformWindows,
}

/// FastV's scoring rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FastVRule {
    /// The released code: attention from the last token, averaged over heads.
    LastToken,
    /// The paper: average attention each image token receives from all tokens.
    AverageReceived,
}

fn act_coverage() -> f64 {
    0.7
}
fn act_keep() -> Vec<f64> {
    vec![0.6, 0.4, 0.2]
}
fn act_selection() -> ActSelection {
    ActSelection::Attention
}
fn fastv_layer() -> usize {
    2
}
fn half() -> f64 {
    0.5
}
fn fastv_rule() -> FastVRule {
    FastVRule::LastToken
}
fn himap_k1() -> usize {
    2
}
fn himap_k2() -> usize {
    8
}
fn himap_keep2() -> f64 {
    0.125
}

fn ratio(key: &'static str, v: f64) -> Result<(), (&'static str, String)> {
    if v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err((key, format!("{v} must be in (0, 1]")))
    }
}

impl CompressionSection {
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Act { .. } => "act",
            Self::Fastv { .. } => "fastv",
            Self::Himap { .. } => "himap",
        }
    }

    /// Checks values; returns (key, message) for the first problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            Self::None => Ok(()),
            Self::Act { coverage, keep_ratios, .. } => {
                ratio("coverage", *coverage)?;
                if keep_ratios.is_empty() {
                    return Err(("keep_ratios", "give at least one stage".into()));
                }
                for r in keep_ratios {
                    ratio("keep_ratios", *r)?;
                }
                Ok(())
            }
            Self::Fastv { layer, keep_ratio, .. } => {
                if *layer == 0 {
                    return Err(("layer", "must be at least 1 (layer K-1's attention scores the tokens)".into()));
                }
                ratio("keep_ratio", *keep_ratio)
            }
            Self::Himap { shallow_layer, shallow_keep_ratio, deep_layer, deep_keep_ratio } => {
                if *shallow_layer == 0 {
                    return Err(("shallow_layer", "must be at least 1".into()));
                }
                if deep_layer <= shallow_layer {
                    return Err(("deep_layer", format!("{deep_layer} must be greater than shallow_layer {shallow_layer}")));
                }
                ratio("shallow_keep_ratio", *shallow_keep_ratio)?;
                ratio("deep_keep_ratio", *deep_keep_ratio)?;
                if deep_keep_ratio > shallow_keep_ratio {
                    return Err(("deep_keep_ratio", format!("{deep_keep_ratio} must not exceed shallow_keep_ratio {shallow_keep_ratio} (k1 ≥ k2)")));
                }
                Ok(())
            }
        }
    }
}
