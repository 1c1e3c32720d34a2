//! Per-step metrics: one JSON object per logged step in `<run>/metrics.jsonl`, and the same
//! scalars as TensorBoard event files in `<run>/tensorboard/` (tensorboard-rs).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anchorage_data::FaultReason;
use serde::{Deserialize, Serialize};
use tensorboard_rs::summary_writer::SummaryWriter;

use crate::TrainError;

/// What one logged optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps done (1-based: the first update logs step 1).
    pub step: u64,
    pub epoch: u32,
    /// Mean loss of the step (as the recipe's `optim.loss_mean` defines it).
    pub loss: f64,
    /// Learning rate the step used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub tokens_per_s: f64,
    /// Samples skipped so far, by reason.
    pub skipped: BTreeMap<FaultReason, u64>,
}

/// Writes metrics.jsonl and, when enabled, TensorBoard events.
pub struct MetricsLog {
    jsonl: BufWriter<File>,
    path: PathBuf,
    tensorboard: Option<SummaryWriter>,
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
            Some(SummaryWriter::new(&dir))
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
            let step = m.step as usize;
            tb.add_scalar("train/loss", m.loss as f32, step);
            tb.add_scalar("train/lr", m.lr as f32, step);
            tb.add_scalar("train/grad_norm", m.grad_norm as f32, step);
            tb.add_scalar("throughput/samples_per_s", m.samples_per_s as f32, step);
            tb.add_scalar("throughput/tokens_per_s", m.tokens_per_s as f32, step);
            for (reason, count) in &m.skipped {
                tb.add_scalar(&format!("data/skipped/{}", reason.name()), *count as f32, step);
            }
            tb.flush();
        }
        Ok(())
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

fn truncate_after(path: &Path, step: u64) -> Result<(), TrainError> {
    let kept: Vec<StepMetrics> = MetricsLog::read(path)?.into_iter().filter(|m| m.step <= step).collect();
    let mut text = String::new();
    for m in &kept {
        text.push_str(&serde_json::to_string(m).map_err(|e| TrainError::Io { path: path.to_path_buf(), source: e.into() })?);
        text.push('\n');
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
    }
}
