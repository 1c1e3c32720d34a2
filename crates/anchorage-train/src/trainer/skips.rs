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

    /// Adds the distinct samples of an earlier `skipped.jsonl` of the same run (a resumed run
    /// appends to the list rather than replacing it). Lines that do not read are dropped with a
    /// warning: the list is a report, and the counts live in the checkpoint.
    pub fn add_listed(&mut self, jsonl: &str) {
        for (n, line) in jsonl.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let parsed = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| {
                let reason: FaultReason = serde_json::from_value(v.get("reason")?.clone()).ok()?;
                Some((reason, v.get("id")?.as_str()?.to_string(), v.get("detail").and_then(|d| d.as_str()).unwrap_or_default().to_string()))
            });
            match parsed {
                Some((reason, id, detail)) => {
                    self.distinct.entry((reason, id)).or_insert(detail);
                }
                None => tracing::warn!(line = n + 1, "skipped.jsonl: dropping a line that does not read"),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_skip_survives_a_resume() {
        let mut first = SkipLog::default();
        first.distinct.insert((FaultReason::MissingImage, "a".into()), "no file".into());
        let mut resumed = SkipLog::default();
        resumed.distinct.insert((FaultReason::MissingImage, "b".into()), "no file".into());
        resumed.add_listed(&format!("{}{{\"torn", first.jsonl()));
        assert_eq!(resumed.distinct.len(), 2);
        assert!(resumed.jsonl().contains("\"id\":\"a\"") && resumed.jsonl().contains("\"id\":\"b\""));
    }
}
