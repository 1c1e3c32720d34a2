//! One run's line of the comparison: what it is (connector, compression), what it cost, what it scored.

use std::collections::BTreeMap;

/// One run's row, as `train compare` reads it from the run folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRow {
    /// The run folder's name, e.g. `mlp2x_gelu-fastv`.
    pub name: String,
    /// The connector (`mlp2x_gelu`, `c_abstractor`, `resampler`, `anchor_former`, ...): the colour key.
    pub connector: String,
    /// The in-LLM compression (`none`, `fastv`, `himap`, `act`, ...): the marker-shape key.
    pub compression: String,
    /// Mean visual tokens entering the LLM per question.
    pub visual_tokens: f64,
    /// FLOPs of one question's prefill, where the run reports them.
    pub prefill_flops: Option<f64>,
    /// Mean seconds per question batch, image encoding plus prefill.
    pub prefill_latency_s: f64,
    pub decode_tokens_per_s: f64,
    /// Wall-clock seconds the training took, where the run recorded it.
    pub train_seconds: Option<f64>,
    /// Benchmark name -> headline score (percent; points for MME).
    pub scores: BTreeMap<String, f64>,
}

/// The quantity a plot puts on its x axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    VisualTokens,
    PrefillLatency,
    PrefillFlops,
}

impl Axis {
    /// The axis title drawn under the plot.
    pub fn title(self) -> &'static str {
        match self {
            Axis::VisualTokens => "Visual tokens per question",
            Axis::PrefillLatency => "Prefill latency per batch (s)",
            Axis::PrefillFlops => "Prefill FLOPs per question",
        }
    }

    /// The row's value on this axis; `None` where the run lacks it or it is not finite.
    pub fn value(self, row: &RunRow) -> Option<f64> {
        let v = match self {
            Axis::VisualTokens => Some(row.visual_tokens),
            Axis::PrefillLatency => Some(row.prefill_latency_s),
            Axis::PrefillFlops => row.prefill_flops,
        };
        v.filter(|v| v.is_finite())
    }
}

/// One plot: which quantity goes along x, which benchmark's score up y.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub x: Axis,
    /// The benchmark whose score is y (a key of [`RunRow::scores`]).
    pub bench: String,
    /// A logarithmic x axis (falls back to linear, with a note, when a plotted x is not positive).
    pub log_x: bool,
}

impl Plot {
    /// Score against visual tokens, on a log axis (token counts span 32 to 2880).
    pub fn accuracy_vs_tokens(bench: &str) -> Self {
        let title = format!("{bench}: score vs visual tokens");
        Plot { title, x: Axis::VisualTokens, bench: bench.to_string(), log_x: true }
    }

    /// Score against prefill latency, on a linear axis.
    pub fn accuracy_vs_latency(bench: &str) -> Self {
        let title = format!("{bench}: score vs prefill latency");
        Plot { title, x: Axis::PrefillLatency, bench: bench.to_string(), log_x: false }
    }

    /// The y axis title.
    pub fn y_title(&self) -> String {
        format!("{} score", self.bench)
    }
}
