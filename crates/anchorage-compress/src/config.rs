//! Policy settings, and the wire format of a recipe's `[compression]` table: [`CompressionPolicy`]
//! deserialises from it directly, tagged by `method` (`none`, `act`, `fastv`, `himap`), every other
//! key optional with the defaults below, unknown keys refused. Serde checks the shape; the values
//! are checked here, once: [`CompressionPolicy::validate`] without a model,
//! [`CompressionPolicy::check`] against a decoder's layer count.
//!
//! Keep amounts are ratios of each sample's own image-token count, turned into counts with
//! [`keep_count`](crate::rules::keep_count) (Python's `round`), so one setting serves every
//! connector (576 MLP tokens, 145 anchors, ...).

use serde::{Deserialize, Serialize};

use crate::error::CompressError;

/// How ACT-IN-LLM picks the visual keys/values of a stage (`selection = "attention" | "avg_pool" |
/// "uniform_windows"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActSelection {
    /// Top-k by the previous layer's last-row attention, averaged over heads.
    Attention,
    /// The paper's AvgPool-1D K/V variant: the image tokens are cut into `k` adaptive windows
    /// (`torch.nn.functional.adaptive_avg_pool1d`'s bounds) and each window's keys (after RoPE)
    /// and values are averaged into one; text keys/values stay as they are.
    AvgPool,
    /// Not in the paper: the same `k` windows, keeping the centre token of each as is (a
    /// content-independent subset of the existing keys/values, no averaging).
    UniformWindows,
}

/// ACT-IN-LLM: every token stays a query; compressed layers attend to all text keys/values plus a
/// per-stage subset of the visual ones. Defaults: coverage 0.7, keep ratios 0.6, 0.4, 0.2, attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActConfig {
    /// Fraction of the layers (the deepest) that carry a compression module (paper: about 0.7).
    pub coverage: f64,
    /// Fraction of visual keys/values kept per stage, shallow to deep; the compressed layers are
    /// split into this many contiguous stages (earlier stages take the remainder).
    pub keep_ratios: Vec<f64>,
    pub selection: ActSelection,
}

impl Default for ActConfig {
    fn default() -> Self {
        Self {
            coverage: 0.7,
            keep_ratios: vec![0.6, 0.4, 0.2],
            selection: ActSelection::Attention,
        }
    }
}

/// FastV's scoring rule (`rule = "last_token" | "average_received"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FastVRule {
    /// The released code: the last token's head-mean attention row.
    LastToken,
    /// The paper: attention each image token receives from all tokens (summed over rows).
    AverageReceived,
}

/// FastV: after `layer` layers (scored with layer `layer - 1`'s attention), keep the best image
/// tokens and drop the rest from the sequence. Defaults: K = 2, keep 0.5, last token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastVConfig {
    /// K (at least 1).
    pub layer: usize,
    /// Fraction of the image tokens kept (1 - R).
    pub keep_ratio: f64,
    pub rule: FastVRule,
}

impl Default for FastVConfig {
    fn default() -> Self {
        Self {
            layer: 2,
            keep_ratio: 0.5,
            rule: FastVRule::LastToken,
        }
    }
}

/// HiMAP: shallow pruning after `shallow_layer` layers by text→image attention, deep pruning after
/// `deep_layer` layers by image→image attention among the remaining image tokens. Defaults: K1 = 2
/// keeping 0.5 (288/576 in the release), K2 = 8 keeping 0.125 (72/576).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HimapConfig {
    /// K1 (at least 1).
    pub shallow_layer: usize,
    /// Fraction of the image tokens kept by the shallow rule (k1 / N).
    pub shallow_keep_ratio: f64,
    /// K2 (> K1).
    pub deep_layer: usize,
    /// Fraction of the *original* image tokens kept by the deep rule (k2 / N ≤ k1 / N).
    pub deep_keep_ratio: f64,
}

impl Default for HimapConfig {
    fn default() -> Self {
        Self {
            shallow_layer: 2,
            shallow_keep_ratio: 0.5,
            deep_layer: 8,
            deep_keep_ratio: 0.125,
        }
    }
}

/// The compression a model runs; a recipe's `[compression]` table (`method = "none" | "act" |
/// "fastv" | "himap"` and that method's keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum CompressionPolicy {
    /// Every layer sees every token.
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "act")]
    Act(ActConfig),
    #[serde(rename = "fastv")]
    FastV(FastVConfig),
    #[serde(rename = "himap")]
    Himap(HimapConfig),
}

pub(crate) fn ratio(key: &'static str, v: f64) -> Result<(), CompressError> {
    if v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(CompressError::Config {
            key,
            message: format!("{v} must be in (0, 1]"),
        })
    }
}

/// K of a pruning point: at least 1 (layer K-1's attention scores the tokens), and when the
/// decoder is known, below its layer count (layers K.. see the result).
pub(crate) fn layer_in(key: &'static str, layer: usize, num_layers: Option<usize>) -> Result<(), CompressError> {
    let message = match num_layers {
        _ if layer == 0 => "must be at least 1 (layer K-1's attention scores the tokens)".to_string(),
        Some(n) if layer >= n => format!("{layer} must be in 1..{n} (layer K-1's attention scores, layers K.. see the result)"),
        _ => return Ok(()),
    };
    Err(CompressError::Config { key, message })
}

impl CompressionPolicy {
    /// Short name (`none`, `act`, `fastv`, `himap`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Act(_) => "act",
            Self::FastV(_) => "fastv",
            Self::Himap(_) => "himap",
        }
    }

    /// Checks the settings that do not depend on the model (what a recipe can check on its own).
    pub fn validate(&self) -> Result<(), CompressError> {
        self.checked(None)
    }

    /// Checks the settings against a decoder with `num_layers` layers.
    pub fn check(&self, num_layers: usize) -> Result<(), CompressError> {
        self.checked(Some(num_layers))
    }

    fn checked(&self, num_layers: Option<usize>) -> Result<(), CompressError> {
        match self {
            Self::None => Ok(()),
            Self::Act(c) => {
                ratio("coverage", c.coverage)?;
                if c.keep_ratios.is_empty() {
                    return Err(CompressError::Config {
                        key: "keep_ratios",
                        message: "give at least one stage".into(),
                    });
                }
                c.keep_ratios.iter().try_for_each(|&r| ratio("keep_ratios", r))?;
                match num_layers {
                    Some(n) if n < 2 => Err(CompressError::Config {
                        key: "coverage",
                        message: format!("{n} layers: ACT-IN-LLM needs at least 2"),
                    }),
                    _ => Ok(()),
                }
            }
            Self::FastV(c) => {
                layer_in("layer", c.layer, num_layers)?;
                ratio("keep_ratio", c.keep_ratio)
            }
            Self::Himap(c) => {
                layer_in("shallow_layer", c.shallow_layer, num_layers)?;
                if c.deep_layer <= c.shallow_layer {
                    return Err(CompressError::Config {
                        key: "deep_layer",
                        message: format!("{} must be greater than shallow_layer {}", c.deep_layer, c.shallow_layer),
                    });
                }
                layer_in("deep_layer", c.deep_layer, num_layers)?;
                ratio("shallow_keep_ratio", c.shallow_keep_ratio)?;
                ratio("deep_keep_ratio", c.deep_keep_ratio)?;
                if c.deep_keep_ratio > c.shallow_keep_ratio {
                    return Err(CompressError::Config {
                        key: "deep_keep_ratio",
                        message: format!("{} must not exceed shallow_keep_ratio {} (k1 ≥ k2)", c.deep_keep_ratio, c.shallow_keep_ratio),
                    });
                }
                Ok(())
            }
        }
    }
}
