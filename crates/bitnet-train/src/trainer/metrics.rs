//! `metrics.jsonl`: one JSON object per logged step.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub step: u64,
    /// Mean training loss of the step (absent on the step-0 record, which only has `val_loss`;
    /// null when non-finite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    pub lr: f64,
    /// Training tokens per second of the steps since the previous record (the time of the
    /// forward, backward and update passes; evaluation and checkpoints are not counted).
    pub tokens_per_s: f64,
    pub tokens: u64,
    /// Global gradient norm before clipping; null when non-finite (the step was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_ppl: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Appends records to `metrics.jsonl`, one line each, flushed per record.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log; with `keep_until = Some(step)` (resuming) records after `step` are dropped
    /// first, so a resumed run does not duplicate steps logged after the checkpoint.
    pub fn open(path: &Path, keep_until: Option<u64>) -> Result<Self> {
        let kept: Vec<MetricRecord> = match keep_until {
            Some(step) => {
                read(path).unwrap_or_default().into_iter().filter(|r| r.step <= step).collect()
            }
            None => Vec::new(),
        };
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r).expect("record serializes"));
            text.push('\n');
        }
        super::checkpoint::write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, r: &MetricRecord) -> Result<()> {
        let line = serde_json::to_string(r).expect("record serializes");
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        self.file.flush().map_err(|e| TrainError::io(&self.path, e))
    }
}

/// Reads a `metrics.jsonl`.
pub fn read(path: &Path) -> Result<Vec<MetricRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
        })
        .collect()
}
