//! Learning-rate and weight-decay schedules.
//!
//! The two-stage b1.58 schedule of Microsoft's "The Era of 1-bit LLMs: Training Tips, Code and
//! FAQ": linear warmup to the stage-1 peak; stage 1 decays linearly until the midpoint of the run;
//! there the rate drops to the (lower) stage-2 peak and decays linearly to `min_lr` at the end.
//! Weight decay is `wd` in stage 1 and 0 in stage 2. The FAQ gives the two peaks per model size
//! but not where stage 1's line ends; we end it at the mean of the two peaks, so the midpoint
//! drop is half the gap between them (`stage1_end` overrides this).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    TwoStage,
    /// Warmup then cosine decay from `peak1` to `min_lr`; constant weight decay `wd`.
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub peak1: f64,
    pub peak2: f64,
    pub stage1_end: f64,
    pub min_lr: f64,
    pub wd: f64,
}

impl Schedule {
    /// The two-stage schedule with stage 1 ending at the mean of the peaks, `min_lr` 0, wd 0.1.
    pub fn two_stage(total_steps: u64, warmup_steps: u64, peak1: f64, peak2: f64) -> Self {
        Self {
            kind: ScheduleKind::TwoStage,
            total_steps,
            warmup_steps,
            peak1,
            peak2,
            stage1_end: 0.5 * (peak1 + peak2),
            min_lr: 0.0,
            wd: 0.1,
        }
    }

    pub fn cosine(total_steps: u64, warmup_steps: u64, peak: f64, min_lr: f64) -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            stage1_end: peak,
            peak2: peak,
            min_lr,
            ..Self::two_stage(total_steps, warmup_steps, peak, peak)
        }
    }

    /// The first step of stage 2.
    pub fn midpoint(&self) -> u64 {
        self.total_steps / 2
    }

    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let w = self.warmup_steps.min(self.midpoint());
        if step < w {
            return self.peak1 * (step + 1) as f64 / w as f64;
        }
        let lerp = |a: f64, b: f64, from: u64, to: u64| {
            let span = to.saturating_sub(from).max(1) as f64;
            a + (b - a) * ((step - from) as f64 / span).min(1.0)
        };
        match self.kind {
            ScheduleKind::TwoStage => {
                let mid = self.midpoint();
                if step < mid {
                    lerp(self.peak1, self.stage1_end, w, mid)
                } else {
                    lerp(self.peak2, self.min_lr, mid, self.total_steps)
                }
            }
            ScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(w).max(1) as f64;
                let p = ((step - w) as f64 / span).min(1.0);
                self.min_lr
                    + 0.5 * (self.peak1 - self.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }

    /// Weight decay of optimizer step `step`.
    pub fn weight_decay(&self, step: u64) -> f64 {
        match self.kind {
            ScheduleKind::TwoStage if step >= self.midpoint() => 0.0,
            _ => self.wd,
        }
    }
}
