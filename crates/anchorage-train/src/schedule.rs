//! Learning-rate schedules with linear warmup, as transformers' `optimization.py` defines them
//! (`get_cosine_schedule_with_warmup` with `num_cycles = 0.5`, `get_linear_schedule_with_warmup`,
//! `get_constant_schedule_with_warmup`).

use crate::recipe::Schedule;

/// The learning rate for each optimizer update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub kind: Schedule,
    pub base: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The learning rate of update `step` (0-based). Like transformers' Trainer, the first update of
    /// a run with warmup uses lr 0: the scheduler is stepped after each optimizer step.
    pub fn lr(&self, step: u64) -> f64 {
        self.base * self.factor(step)
    }

    fn factor(&self, step: u64) -> f64 {
        let (s, w, t) = (step as f64, self.warmup_steps as f64, self.total_steps as f64);
        if step < self.warmup_steps {
            return s / w.max(1.0);
        }
        match self.kind {
            Schedule::Constant => 1.0,
            Schedule::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            Schedule::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        let s = LrSchedule { kind: Schedule::Cosine, base: 1.0, warmup_steps: 4, total_steps: 12 };
        assert_eq!(s.lr(0), 0.0);
        assert_eq!(s.lr(2), 0.5);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(8) - 0.5).abs() < 1e-12);
        assert!(s.lr(11) > 0.0 && s.lr(11) < 0.05);
    }
}
