//! What `GET /metrics` reports, in Prometheus' text format: counters and gauges the handlers and
//! the engine thread update with atomics, and two latency histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// A Prometheus histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    inner: Mutex<HistogramData>,
}

#[derive(Debug, Default, Clone)]
struct HistogramData {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
    }
}

/// The server's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Answered requests by HTTP status.
    requests: Mutex<BTreeMap<u16, u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Requests waiting in the queue.
    pub queued: AtomicU64,
    pub slots_busy: AtomicU64,
    pub slots_total: AtomicU64,
    /// Requests whose client went away before the end.
    pub cancelled: AtomicU64,
    /// Seconds from a request entering the queue to its first token.
    pub ttft: Histogram,
    /// Seconds between a request's consecutive tokens.
    pub itl: Histogram,
}

impl Metrics {
    pub fn record_status(&self, status: u16) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_insert(0) += 1;
    }

    /// Answered requests with `status` so far.
    pub fn requests_with(&self, status: u16) -> u64 {
        let r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        r.get(&status).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP bitnet_requests_total HTTP requests answered, by status.\n\
             # TYPE bitnet_requests_total counter"
        );
        for (status, n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "bitnet_requests_total{{status=\"{status}\"}} {n}");
        }
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars = [
            (
                "bitnet_prompt_tokens_total",
                "counter",
                "Prompt tokens of finished requests.",
                get(&self.prompt_tokens),
            ),
            (
                "bitnet_generated_tokens_total",
                "counter",
                "Tokens generated.",
                get(&self.generated_tokens),
            ),
            (
                "bitnet_cancelled_requests_total",
                "counter",
                "Requests whose client went away.",
                get(&self.cancelled),
            ),
            ("bitnet_queue_depth", "gauge", "Requests waiting for a slot.", get(&self.queued)),
            ("bitnet_slots_busy", "gauge", "Slots serving a request.", get(&self.slots_busy)),
            (
                "bitnet_slots_total",
                "gauge",
                "Slots (requests served at once).",
                get(&self.slots_total),
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        self.ttft.render(
            &mut out,
            "bitnet_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first generated token.",
        );
        self.itl.render(
            &mut out,
            "bitnet_inter_token_latency_seconds",
            "Seconds between consecutive generated tokens of a request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let m = Metrics::default();
        for s in [0.003, 0.02, 0.02, 500.0] {
            m.ttft.observe(s);
        }
        m.record_status(200);
        m.record_status(200);
        m.record_status(429);
        let text = m.render();
        for line in [
            "bitnet_requests_total{status=\"200\"} 2",
            "bitnet_requests_total{status=\"429\"} 1",
            "bitnet_time_to_first_token_seconds_bucket{le=\"0.005\"} 1",
            "bitnet_time_to_first_token_seconds_bucket{le=\"0.025\"} 3",
            "bitnet_time_to_first_token_seconds_bucket{le=\"120\"} 3",
            "bitnet_time_to_first_token_seconds_bucket{le=\"+Inf\"} 4",
            "bitnet_time_to_first_token_seconds_count 4",
            "bitnet_slots_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
