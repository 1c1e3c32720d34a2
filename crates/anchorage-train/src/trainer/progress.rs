//! What a run shows while it trains: a progress bar on a terminal, or about twenty progress lines
//! in the log when the output is captured or redirected.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// The run's progress display (only the leader shows one).
pub(crate) struct Progress {
    bar: ProgressBar,
    /// Log lines instead of a bar.
    lines: bool,
    every: u64,
    total: u64,
    first_step: u64,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(show: bool, bar: bool, first_step: u64, total: u64) -> Self {
        let pb = if show && bar { ProgressBar::new(total) } else { ProgressBar::hidden() };
        pb.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  elapsed {elapsed_precise} ETA {eta_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.set_position(first_step);
        Self { bar: pb, lines: show && !bar, every: (total / 20).max(1), total, first_step, started: Instant::now() }
    }

    /// After step `next` (1-based count of steps done).
    pub(crate) fn update(&self, next: u64, loss: f64, lr: f64, samples_per_s: f64, tokens_per_s: f64) {
        // The first warmup step's lr is exactly 0 (transformers' schedule): say so plainly.
        let lr = if lr == 0.0 { "0 (warmup)".to_string() } else { format!("{lr:.2e}") };
        let rates = format!("loss {loss:.4}  lr {lr}  {samples_per_s:.1} samples/s  {tokens_per_s:.0} tok/s");
        self.bar.set_position(next);
        self.bar.set_message(rates.clone());
        if self.lines && (next % self.every == 0 || next == self.total) {
            let done = (next - self.first_step) as f64;
            let eta = self.started.elapsed().as_secs_f64() / done.max(1.0) * (self.total - next) as f64;
            tracing::info!("step {next}/{}  {rates}  ETA {eta:.0} s", self.total);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
