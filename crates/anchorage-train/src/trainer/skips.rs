//! Skipped samples: counts by fault reason (every occurrence: a bad sample is met once per epoch),
//! the first ids of each reason for the log, and every distinct sample once for `skipped.jsonl`.

use std::collections::BTreeMap;

use anchorage_data::{FaultReason, Skipped};

/// What the run skipped so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipLog {
    /// Occurrences by reason (a bad sample counts once per epoch it is met in).
    pub counts: BTreeMap<FaultReason, u64>,
    /// The first few distinct ids of each reason.
    pub first_ids: BTreeMap<FaultReason, Vec<String>>,
    /// Every distinct skipped sample once: (reason, id) → detail.
    pub distinct: BTreeMap<(FaultReason, String), String>,
}

impl SkipLog {
    /// A log that continues the counts of a checkpoint.
    pub fn resumed(counts: BTreeMap<FaultReason, u64>) -> Self {
        Self { counts, ..Self::default() }
    }

    /// Records a skip; returns true when it should be logged (the sample is among the first `keep`
    /// distinct ids of its reason, seen for the first time).
    pub fn add(&mut self, skip: &Skipped, keep: usize) -> bool {
        let reason = skip.fault.reason;
        *self.counts.entry(reason).or_default() += 1;
        self.distinct.entry((reason, skip.id.clone())).or_insert_with(|| skip.fault.detail.clone());
        let ids = self.first_ids.entry(reason).or_default();
        if ids.len() < keep && !ids.iter().any(|i| *i == skip.id) {
            ids.push(skip.id.clone());
            true
        } else {
            false
        }
    }

    /// Occurrences in total.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `skipped.jsonl`: one `{"id", "reason", "detail"}` line per distinct skipped sample.
    pub fn jsonl(&self) -> String {
        let mut lines = String::new();
        for ((reason, id), detail) in &self.distinct {
            lines.push_str(&serde_json::json!({ "id": id, "reason": reason.name(), "detail": detail }).to_string());
            lines.push('\n');
        }
        lines
    }
}
