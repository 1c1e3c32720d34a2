//! The token counts a policy gives each layer for one sample, computed from the settings alone (no
//! forward): what the FLOPs model needs to report a full-size model (LLaVA-1.5-7B: 32 layers,
//! d = 4096, m = 11008, 576 image tokens) without running it. A forward's [`Trace`] gives the same
//! counts (tests check they agree).

use crate::act::act_stages;
use crate::config::CompressionPolicy;
use crate::error::CompressError;
use crate::flops::{FlopsReport, FlopsShape};
use crate::rules::keep_count;
use crate::trace::{LayerTokens, Trace};

impl CompressionPolicy {
    /// Per-layer token counts for one sample of `len` tokens, `image` of them image tokens, on a
    /// decoder of `num_layers` layers.
    pub fn schedule(&self, num_layers: usize, len: usize, image: usize) -> Result<Vec<LayerTokens>, CompressError> {
        self.check(num_layers)?;
        if image > len {
            return Err(CompressError::Config {
                key: "image",
                message: format!("{image} image tokens in a sequence of {len}"),
            });
        }
        let text = len - image;
        let full = LayerTokens { queries: len, keys: len };
        let stages = match self {
            Self::FastV(c) => c.stages(),
            Self::Himap(c) => c.stages(),
            Self::None | Self::Act(_) => Vec::new(),
        };
        // Image tokens left after every prune stage that ran before layer `l`.
        let pruned = |l: usize| {
            let k = stages.iter().filter(|s| s.layer <= l).fold(image, |k, s| keep_count(s.keep_ratio, image).min(k));
            LayerTokens { queries: text + k, keys: text + k }
        };
        Ok((0..num_layers)
            .map(|l| match self {
                Self::None => full,
                Self::FastV(_) | Self::Himap(_) => pruned(l),
                Self::Act(c) => match act_stages(c, num_layers).iter().find(|s| s.layers.contains(&l)) {
                    Some(stage) => LayerTokens {
                        queries: len,
                        keys: text + keep_count(stage.keep_ratio, image),
                    },
                    None => full,
                },
            })
            .collect())
    }
}

impl FlopsReport {
    /// From a policy's schedule (see [`CompressionPolicy::schedule`]).
    pub fn from_schedule(shape: FlopsShape, schedule: &[LayerTokens]) -> Self {
        let trace = Trace {
            layers: schedule.iter().map(|&t| vec![t]).collect(),
            selections: Vec::new(),
        };
        let n = schedule.first().map_or(0, |t| t.queries.max(t.keys));
        let mut report = Self::from_trace(shape, &trace, 0);
        report.full = vec![shape.full_layer(n); schedule.len()];
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FastVConfig, HimapConfig};

    #[test]
    fn llava_7b_fastv_and_himap_flops() {
        // LLaVA-1.5-7B shapes; 35 tokens before the image, 576 image tokens, 40 after.
        let shape = FlopsShape { hidden: 4096, intermediate: 11008 };
        let len = 35 + 576 + 40;
        let fastv = CompressionPolicy::FastV(FastVConfig::default());
        let s = fastv.schedule(32, len, 576).unwrap();
        assert_eq!(s[1].queries, len);
        assert_eq!(s[2].queries, len - 288);
        let r = FlopsReport::from_schedule(shape, &s);
        let expected = (2.0 * shape.full_layer(len) + 30.0 * shape.full_layer(len - 288)) / (32.0 * shape.full_layer(len));
        assert!((r.ratio() - expected).abs() < 1e-12);
        let himap = CompressionPolicy::Himap(HimapConfig::default());
        let s = himap.schedule(32, len, 576).unwrap();
        assert_eq!((s[2].queries, s[8].queries), (len - 288, len - 576 + 72));
        assert!(FlopsReport::from_schedule(shape, &s).ratio() < r.ratio());
    }
}
