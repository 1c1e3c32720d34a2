//! How a canonical connector key is spelled in a file.

/// A spelling of canonical keys in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// `prefix` + canonical key (`model.mm_projector.`, `connector.`, `abstractor.`, or none).
    Prefix(String),
    /// transformers' `LlavaMultiModalProjector`: canonical `0.` / `2.` become
    /// `multi_modal_projector.linear_1.` / `linear_2.` (transformers
    /// `src/transformers/models/llava/modeling_llava.py`).
    HfLlava,
    /// open_flamingo's `Flamingo.perceiver` (a bare `PerceiverResampler`, no projector):
    /// canonical `0.` becomes `perceiver.` (mlfoundations/open_flamingo
    /// `open_flamingo/src/flamingo.py`, `open_flamingo/src/helpers.py`).
    OpenFlamingo,
}

impl Naming {
    pub fn prefix(p: &str) -> Self {
        Self::Prefix(p.to_string())
    }

    /// The file key for a canonical key.
    pub fn key(&self, canonical: &str) -> String {
        match self {
            Self::Prefix(p) => format!("{p}{canonical}"),
            Self::HfLlava => {
                let (head, rest) = canonical.split_once('.').unwrap_or((canonical, ""));
                let layer = match head {
                    "0" => "linear_1".to_string(),
                    "2" => "linear_2".to_string(),
                    other => format!("layer_{other}"),
                };
                format!("multi_modal_projector.{layer}.{rest}")
            }
            Self::OpenFlamingo => match canonical.strip_prefix("0.") {
                Some(rest) => format!("perceiver.{rest}"),
                // A projector has no place in open_flamingo's tree; keep it visibly apart.
                None => format!("perceiver_projector.{canonical}"),
            },
        }
    }

    /// Whether a file key belongs to this spelling's namespace (for the unexpected-keys check).
    pub fn owns(&self, file_key: &str) -> bool {
        match self {
            Self::Prefix(p) => file_key.starts_with(p.as_str()),
            Self::HfLlava => file_key.starts_with("multi_modal_projector."),
            Self::OpenFlamingo => file_key.starts_with("perceiver."),
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Prefix(p) if p.is_empty() => "bare keys".into(),
            Self::Prefix(p) => format!("keys under `{p}`"),
            Self::HfLlava => "transformers Llava keys (`multi_modal_projector.linear_{1,2}`)".into(),
            Self::OpenFlamingo => "open_flamingo keys (`perceiver.latents`, `perceiver.layers...`)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_llava_and_hf_keys() {
        assert_eq!(Naming::prefix("model.mm_projector.").key("2.bias"), "model.mm_projector.2.bias");
        assert_eq!(Naming::HfLlava.key("0.weight"), "multi_modal_projector.linear_1.weight");
        assert_eq!(Naming::HfLlava.key("2.bias"), "multi_modal_projector.linear_2.bias");
        assert!(Naming::HfLlava.owns("multi_modal_projector.linear_1.weight"));
        assert!(!Naming::prefix("model.mm_projector.").owns("model.layers.0.x"));
        assert_eq!(Naming::OpenFlamingo.key("0.layers.1.0.to_q.weight"), "perceiver.layers.1.0.to_q.weight");
        assert_eq!(Naming::OpenFlamingo.key("0.latents"), "perceiver.latents");
        assert!(Naming::OpenFlamingo.owns("perceiver.norm.bias"));
        assert!(!Naming::OpenFlamingo.owns("vision_encoder.conv1.weight"));
    }
}
