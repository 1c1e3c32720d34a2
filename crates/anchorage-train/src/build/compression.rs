//! `[compression]` (a [`CompressionSection`]) → [`CompressionPolicy`] of anchorage-compress.

use anchorage_model::spec::{
    ActConfig, ActSelection as Sel, CompressionPolicy, FastVConfig, FastVRule as Rule, HimapConfig,
};

use crate::recipe::{ActSelection, CompressionSection, FastVRule};

/// The compression policy the recipe asks for. The section is assumed checked
/// ([`CompressionSection::check`]); [`CompressionPolicy::check`] then checks it against the
/// LLM's layer count when hooks are built.
pub fn compression_policy(section: &CompressionSection) -> CompressionPolicy {
    match section {
        CompressionSection::None => CompressionPolicy::None,
        CompressionSection::Act { coverage, keep_ratios, selection } => CompressionPolicy::Act(ActConfig {
            coverage: *coverage,
            keep_ratios: keep_ratios.clone(),
            selection: match selection {
                ActSelection::Attention => Sel::Attention,
                ActSelection::AvgPool => Sel::AvgPool,
                ActSelection::UniformWindows => Sel::UniformWindows,
            },
        }),
        CompressionSection::Fastv { layer, keep_ratio, rule } => CompressionPolicy::FastV(FastVConfig {
            layer: *layer,
            keep_ratio: *keep_ratio,
            rule: match rule {
                FastVRule::LastToken => Rule::LastToken,
                FastVRule::AverageReceived => Rule::AverageReceived,
            },
        }),
        CompressionSection::Himap { shallow_layer, shallow_keep_ratio, deep_layer, deep_keep_ratio } => {
            CompressionPolicy::Himap(HimapConfig {
                shallow_layer: *shallow_layer,
                shallow_keep_ratio: *shallow_keep_ratio,
                deep_layer: *deep_layer,
                deep_keep_ratio: *deep_keep_ratio,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_selection_strings() {
        #[derive(serde::Deserialize)]
        struct Wrap {
            selection: ActSelection,
        }
        for (text, want) in [("attention", ActSelection::Attention), ("avg_pool", ActSelection::AvgPool), ("uniform_windows", ActSelection::UniformWindows)] {
            let parsed: Wrap = toml::from_str(&format!("selection = \"{text}\"")).unwrap();
            assert_eq!(parsed.selection, want);
        }
        let err = toml::from_str::<Wrap>("selection = \"avgpool\"").err().unwrap().to_string();
        assert!(err.contains("attention") && err.contains("avg_pool") && err.contains("uniform_windows"), "{err}");
    }

    #[test]
    fn every_method_converts() {
        assert_eq!(compression_policy(&CompressionSection::None), CompressionPolicy::None);
        let act = CompressionSection::Act { coverage: 0.7, keep_ratios: vec![0.6, 0.4, 0.2], selection: ActSelection::AvgPool };
        assert_eq!(
            compression_policy(&act),
            CompressionPolicy::Act(ActConfig { coverage: 0.7, keep_ratios: vec![0.6, 0.4, 0.2], selection: Sel::AvgPool })
        );
        let windows = CompressionSection::Act { coverage: 0.7, keep_ratios: vec![0.5], selection: ActSelection::UniformWindows };
        assert_eq!(
            compression_policy(&windows),
            CompressionPolicy::Act(ActConfig { coverage: 0.7, keep_ratios: vec![0.5], selection: Sel::UniformWindows })
        );
        let fastv = CompressionSection::Fastv { layer: 2, keep_ratio: 0.5, rule: FastVRule::AverageReceived };
        assert_eq!(
            compression_policy(&fastv),
            CompressionPolicy::FastV(FastVConfig { layer: 2, keep_ratio: 0.5, rule: Rule::AverageReceived })
        );
        let himap = CompressionSection::Himap { shallow_layer: 2, shallow_keep_ratio: 0.5, deep_layer: 8, deep_keep_ratio: 0.125 };
        assert_eq!(compression_policy(&himap), CompressionPolicy::Himap(HimapConfig::default()));
        // The recipe's defaults build valid hooks on a 32-layer LLM.
        for section in [act, windows, fastv, himap] {
            assert!(compression_policy(&section).hooks(32).is_ok());
        }
    }
}
