//! The FLOPs model FastV's paper (Chen et al. 2024, arXiv 2403.06764) is usually quoted with (not
//! found verbatim, so it is documented as *a model*, not a measurement): one decoder layer over `n` tokens of width
//! `d` with an FFN of width `m` costs `4·n·d² + 2·n²·d + 2·n·d·m`.
//!
//! Extended the obvious way for key/value restriction (ACT-IN-LLM): with `q` query tokens and `k`
//! attended keys, Q and O projections cost `2·q·d²`, K and V projections `2·k·d²` (only the kept
//! keys are projected, as ours does except where the crate docs say), the two attention products
//! `2·q·k·d`, the FFN `2·q·d·m`. With `q = k = n` this is the formula above. Grouped-query attention, RoPE, norms and the LM head are not counted, as in the model.

use crate::trace::{LayerTokens, Trace};

/// Width settings the model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlopsShape {
    /// `d`: hidden size.
    pub hidden: usize,
    /// `m`: FFN intermediate size.
    pub intermediate: usize,
}

impl FlopsShape {
    /// Model FLOPs of one layer.
    pub fn layer(&self, t: LayerTokens) -> f64 {
        let (d, m) = (self.hidden as f64, self.intermediate as f64);
        let (q, k) = (t.queries as f64, t.keys as f64);
        2.0 * q * d * d + 2.0 * k * d * d + 2.0 * q * k * d + 2.0 * q * d * m
    }

    /// Model FLOPs of one layer with no compression over `n` tokens: `4nd² + 2n²d + 2ndm`.
    pub fn full_layer(&self, n: usize) -> f64 {
        self.layer(LayerTokens { queries: n, keys: n })
    }
}

/// Per-layer model FLOPs of one sample, with and without compression.
#[derive(Debug, Clone, PartialEq)]
pub struct FlopsReport {
    /// Uncompressed, per layer.
    pub full: Vec<f64>,
    /// As the policy ran, per layer.
    pub compressed: Vec<f64>,
}

impl FlopsReport {
    /// From a forward's trace, for sample `sample` (its layer-0 token count is the uncompressed
    /// length; a layer without an entry for the sample counts as uncompressed).
    pub fn from_trace(shape: FlopsShape, trace: &Trace, sample: usize) -> Self {
        let n = trace.layers.first().and_then(|l| l.get(sample)).map_or(0, |t| t.queries);
        let compressed: Vec<f64> = trace
            .layers
            .iter()
            .map(|l| l.get(sample).map_or(shape.full_layer(n), |&t| shape.layer(t)))
            .collect();
        Self {
            full: vec![shape.full_layer(n); compressed.len()],
            compressed,
        }
    }

    /// Total uncompressed FLOPs.
    pub fn total_full(&self) -> f64 {
        self.full.iter().sum()
    }

    /// Total compressed FLOPs.
    pub fn total_compressed(&self) -> f64 {
        self.compressed.iter().sum()
    }

    /// Compressed / uncompressed (1.0 when nothing ran).
    pub fn ratio(&self) -> f64 {
        let full = self.total_full();
        if full > 0.0 {
            self.total_compressed() / full
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_layer_is_the_spec_formula() {
        let s = FlopsShape { hidden: 4096, intermediate: 11008 };
        let n = 611.0;
        let d = 4096.0;
        let expected = 4.0 * n * d * d + 2.0 * n * n * d + 2.0 * n * d * 11008.0;
        assert_eq!(s.full_layer(611), expected);
    }

    #[test]
    fn fastv_schedule_matches_k_f_n_plus_rest() {
        // K = 2, n = 611 (35 + 576 image), keep 288: K·f(n) + (T−K)·f(n − 288).
        let s = FlopsShape { hidden: 64, intermediate: 172 };
        let mut trace = Trace::default();
        for l in 0..6 {
            let n = if l < 2 { 611 } else { 611 - 288 };
            trace.layer(l, vec![LayerTokens { queries: n, keys: n }]);
        }
        let r = FlopsReport::from_trace(s, &trace, 0);
        let expected = 2.0 * s.full_layer(611) + 4.0 * s.full_layer(323);
        assert!((r.total_compressed() - expected).abs() < 1e-6);
        assert!(r.ratio() < 1.0);
    }
}
