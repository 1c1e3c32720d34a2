//! `projector_type`: LLaVA's names for its projector, as a recipe's `[connector]` gives them.

use serde::{Deserialize, Serialize};

/// LLaVA's `mm_projector_type` (haotian-liu/LLaVA `llava/model/multimodal_projector/builder.py`):
/// `linear` is a bare `nn.Linear` (keys `mm_projector.weight`); `mlp{N}x_gelu` is an
/// `nn.Sequential` of N Linears with GELU between (keys `mm_projector.{0,2,..}.weight`), even for
/// N = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProjectorType {
    Linear,
    /// `mlp{N}x_gelu`, N ≥ 1.
    MlpGelu(usize),
}

impl ProjectorType {
    /// Linear layers.
    pub fn depth(self) -> usize {
        match self {
            Self::Linear => 1,
            Self::MlpGelu(n) => n,
        }
    }
}

impl TryFrom<String> for ProjectorType {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s == "linear" {
            return Ok(Self::Linear);
        }
        // LLaVA matches `^mlp(\d+)x_gelu$`.
        match s.strip_prefix("mlp").and_then(|r| r.strip_suffix("x_gelu")).map(str::parse::<usize>) {
            Some(Ok(n)) if n >= 1 => Ok(Self::MlpGelu(n)),
            _ => Err(format!("unknown projector_type `{s}`: expected \"linear\" or \"mlp<N>x_gelu\" (N ≥ 1)")),
        }
    }
}

impl From<ProjectorType> for String {
    fn from(p: ProjectorType) -> String {
        match p {
            ProjectorType::Linear => "linear".into(),
            ProjectorType::MlpGelu(n) => format!("mlp{n}x_gelu"),
        }
    }
}
