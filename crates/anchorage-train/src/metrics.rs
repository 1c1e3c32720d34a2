//! Per-step metrics: one JSON object per logged step in `<run>/metrics.jsonl`, and the same
//! scalars as TensorBoard event files in `<run>/tensorboard/` (`tensorboard.rs`). A failed write
//! (a full disk) is an error, never a panic; a torn last line left by a kill is cut on resume.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anchorage_data::FaultReason;
use serde::{Deserialize, Serialize};
use crate::tensorboard::EventWriter;
use crate::TrainError;

/// What one logged optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps done (1-based: the first update logs step 1).
    pub step: u64,
    pub epoch: u32,
    /// Mean loss of the step (as the recipe's `optim.loss_mean` defines it); `"NaN"`/`"inf"`
    /// when it was not finite (the step was then skipped).
    #[serde(with = "crate::json_float")]
    pub loss: f64,
    /// Learning rate the step used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    #[serde(with = "crate::json_float")]
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub tokens_per_s: f64,
    /// Samples skipped so far, by reason.
    pub skipped: BTreeMap<FaultReason, u64>,
    /// Optimizer steps skipped so far because the loss or gradient norm was not finite.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonfinite_steps: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Writes metrics.jsonl and, when enabled, TensorBoard events.
pub struct MetricsLog {
    jsonl: BufWriter<File>,
    path: PathBuf,
    tensorboard: Option<EventWriter>,
}

impl MetricsLog {
    /// Opens the run's metrics. With `resume_after = Some(step)`, lines of steps after `step` (logged
    /// by a run that was killed before its next checkpoint) are dropped, so a resumed run's
    /// metrics.jsonl reads as one uninterrupted run.
    pub fn open(run_dir: &Path, tensorboard: bool, resume_after: Option<u64>) -> Result<Self, TrainError> {
        fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
        let path = run_dir.join("metrics.jsonl");
        match resume_after {
            Some(step) if path.exists() => truncate_after(&path, step)?,
            Some(_) => {}
            None => {
                if path.exists() {
                    fs::remove_file(&path).map_err(|e| io(&path, e))?;
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        let tensorboard = if tensorboard {
            let dir = run_dir.join("tensorboard");
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            Some(EventWriter::create(&dir).map_err(|e| io(&dir, e))?)
        } else {
            None
        };
        Ok(Self { jsonl: BufWriter::new(file), path, tensorboard })
    }

    pub fn log(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        let line = serde_json::to_string(m).map_err(|e| TrainError::Io { path: self.path.clone(), source: e.into() })?;
        writeln!(self.jsonl, "{line}").map_err(|e| io(&self.path, e))?;
        self.jsonl.flush().map_err(|e| io(&self.path, e))?;
        if let Some(tb) = &mut self.tensorboard {
            let written = Self::scalars(tb, m);
            written.map_err(|e| io(tb.path(), e))?;
        }
        Ok(())
    }

    fn scalars(tb: &mut EventWriter, m: &StepMetrics) -> std::io::Result<()> {
        let step = m.step;
        tb.scalar("train/loss", m.loss as f32, step)?;
        tb.scalar("train/lr", m.lr as f32, step)?;
        tb.scalar("train/grad_norm", m.grad_norm as f32, step)?;
        tb.scalar("throughput/samples_per_s", m.samples_per_s as f32, step)?;
        tb.scalar("throughput/tokens_per_s", m.tokens_per_s as f32, step)?;
        for (reason, count) in &m.skipped {
            tb.scalar(&format!("data/skipped/{}", reason.name()), *count as f32, step)?;
        }
        if m.nonfinite_steps > 0 {
            tb.scalar("train/nonfinite_steps", m.nonfinite_steps as f32, step)?;
        }
        tb.flush()
    }

    /// Reads a metrics.jsonl back.
    pub fn read(path: &Path) -> Result<Vec<StepMetrics>, TrainError> {
        let file = File::open(path).map_err(|e| io(path, e))?;
        let mut out = Vec::new();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let m = serde_json::from_str(&line).map_err(|e| TrainError::Invalid {
                path: path.to_path_buf(),
                key: format!("line {}", n + 1),
                message: e.to_string(),
            })?;
            out.push(m);
        }
        Ok(out)
    }
}

/// Keeps the lines of steps up to `step`. A last line that does not parse (torn by a kill or a full
/// disk in the middle of a write) is cut with a warning; a damaged line before it is an error.
fn truncate_after(path: &Path, step: u64) -> Result<(), TrainError> {
    let text = fs::read(path).map_err(|e| io(path, e))?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut kept = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str::<StepMetrics>(line) {
            // The line itself is kept, not re-serialised: parsing and printing a float can change
            // its last digit, and a resumed run's history must stay as it was written.
            Ok(m) if m.step <= step => kept.push(*line),
            Ok(_) => {}
            Err(_) if n + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), line = n + 1, "cutting a torn last line of metrics.jsonl");
            }
            Err(e) => return Err(TrainError::Invalid { path: path.to_path_buf(), key: format!("line {}", n + 1), message: e.to_string() }),
        }
    }
    let mut text = String::new();
    for line in &kept {
        text.push_str(line);
        text.push('\n');
    }
    if text.as_bytes() == fs::read(path).map_err(|e| io(path, e))?.as_slice() {
        return Ok(());
    }
    crate::checkpoint::write_atomic(path, text.as_bytes())
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(step: u64) -> StepMetrics {
        StepMetrics {
            step,
            epoch: 0,
            loss: 1.0 / step as f64,
            lr: 1e-3,
            grad_norm: 0.5,
            samples_per_s: 10.0,
            tokens_per_s: 100.0,
            skipped: BTreeMap::from([(FaultReason::MissingImage, 2)]),
            nonfinite_steps: 0,
        }
    }

    /// Reads TFRecord framing (u64 length, u32 crc, data, u32 crc) and returns each record.
    fn records(path: &Path) -> Vec<Vec<u8>> {
        let bytes = fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            out.push(bytes[at + 12..at + 12 + len].to_vec());
            at += 12 + len + 4;
        }
        out
    }

    #[test]
    fn jsonl_and_tensorboard_hold_every_step_and_resume_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), true, None).unwrap();
        for s in 1..=4 {
            log.log(&metric(s)).unwrap();
        }
        drop(log);
        let back = MetricsLog::read(&dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(back, (1..=4).map(metric).collect::<Vec<_>>());

        let events: Vec<_> = fs::read_dir(dir.path().join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(events.len(), 1);
        assert!(events[0].file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
        let recs = records(&events[0]);
        // A file-version record, then 6 scalars per step (5 + one skip reason).
        assert_eq!(recs.len(), 1 + 4 * 6);
        assert!(recs.iter().any(|r| r.windows(10).any(|w| w == b"train/loss")));

        // A run killed after logging step 4 but checkpointed at step 2 resumes from 2.
        let mut log = MetricsLog::open(dir.path(), false, Some(2)).unwrap();
        log.log(&metric(3)).unwrap();
        drop(log);
        let steps: Vec<u64> = MetricsLog::read(&dir.path().join("metrics.jsonl")).unwrap().iter().map(|m| m.step).collect();
        assert_eq!(steps, vec![1, 2, 3]);

        // A kill in the middle of writing line 4 leaves half of it: cut on resume.
        let path = dir.path().join("metrics.jsonl");
        let line = serde_json::to_string(&metric(4)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        drop(f);
        assert!(MetricsLog::read(&path).is_err());
        let mut log = MetricsLog::open(dir.path(), false, Some(3)).unwrap();
        log.log(&metric(4)).unwrap();
        drop(log);
        let steps: Vec<u64> = MetricsLog::read(&path).unwrap().iter().map(|m| m.step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_file() {
        // /dev/full answers every write with ENOSPC.
        let Ok(file) = OpenOptions::new().append(true).open("/dev/full") else { return };
        let mut log = MetricsLog { jsonl: BufWriter::new(file), path: "/dev/full".into(), tensorboard: None };
        let e = log.log(&metric(1)).unwrap_err().to_string();
        assert!(e.contains("/dev/full") && e.contains("No space left"), "{e}");
    }

    #[test]
    fn a_non_finite_loss_is_written_readably() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), false, None).unwrap();
        log.log(&StepMetrics { loss: f64::NAN, grad_norm: f64::INFINITY, nonfinite_steps: 1, ..metric(1) }).unwrap();
        drop(log);
        let back = MetricsLog::read(&dir.path().join("metrics.jsonl")).unwrap();
        assert!(back[0].loss.is_nan() && back[0].grad_norm.is_infinite() && back[0].nonfinite_steps == 1);
    }
}
