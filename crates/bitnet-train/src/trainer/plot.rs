//! The loss-curve PNG: training loss (blue) and validation loss (red dots) against the step, with
//! numbered axes. Drawn on a small RGB canvas and encoded with the `png` crate.

use super::metrics::MetricRecord;
use crate::error::{Result, TrainError};
use std::path::Path;

const W: usize = 800;
const H: usize = 480;
const LEFT: usize = 70;
const RIGHT: usize = 20;
const TOP: usize = 20;
const BOTTOM: usize = 50;

/// 3x5 glyphs (rows top to bottom, 3 bits each, MSB left) for the characters tick labels use.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        'k' => [4, 5, 6, 5, 5],
        _ => return None,
    })
}

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self { px: vec![255; W * H * 3] }
    }

    fn set(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&rgb);
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), rgb: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for k in 0..=n {
            let t = k as f64 / n as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            self.set(x.round() as i64, y.round() as i64, rgb);
            self.set(x.round() as i64, y.round() as i64 + 1, rgb);
        }
    }

    fn dot(&mut self, x: f64, y: f64, rgb: [u8; 3]) {
        for dy in -2..=2 {
            for dx in -2..=2 {
                self.set(x.round() as i64 + dx, y.round() as i64 + dy, rgb);
            }
        }
    }

    /// Text at scale 2, top-left corner at (x, y).
    fn text(&mut self, x: i64, y: i64, s: &str) {
        for (ci, c) in s.chars().enumerate() {
            let Some(g) = glyph(c) else { continue };
            for (r, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (sx, sy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(
                                x + ci as i64 * 8 + col * 2 + sx,
                                y + r as i64 * 2 + sy,
                                [0; 3],
                            );
                        }
                    }
                }
            }
        }
    }
}

fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws `records` to `path` (atomically).
pub fn write_loss_png(records: &[MetricRecord], path: &Path) -> Result<()> {
    let train: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| !r.skipped)
        .filter_map(|r| r.loss.filter(|l| l.is_finite()).map(|l| (r.step as f64, l)))
        .collect();
    let val: Vec<(f64, f64)> =
        records.iter().filter_map(|r| r.val_loss.map(|v| (r.step as f64, v))).collect();
    let all = train.iter().chain(&val);
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let sx = |x: f64| LEFT as f64 + x / x1 * pw;
    let sy = |y: f64| TOP as f64 + (y1 - y) / (y1 - y0) * ph;

    let mut c = Canvas::new();
    let grey = [210, 210, 210];
    for k in 0..=4 {
        let y = y0 + (y1 - y0) * k as f64 / 4.0;
        c.line((LEFT as f64, sy(y)), (W as f64 - RIGHT as f64, sy(y)), grey);
        c.text(4, sy(y) as i64 - 5, &label(y));
        let x = x1 * k as f64 / 4.0;
        c.line((sx(x), TOP as f64), (sx(x), (H - BOTTOM) as f64), grey);
        c.text(sx(x) as i64 - 12, (H - BOTTOM + 10) as i64, &label(x.round()));
    }
    let black = [0, 0, 0];
    c.line((LEFT as f64, (H - BOTTOM) as f64), ((W - RIGHT) as f64, (H - BOTTOM) as f64), black);
    c.line((LEFT as f64, TOP as f64), (LEFT as f64, (H - BOTTOM) as f64), black);
    for w in train.windows(2) {
        c.line((sx(w[0].0), sy(w[0].1)), (sx(w[1].0), sy(w[1].1)), [31, 119, 180]);
    }
    for &(x, y) in &val {
        c.dot(sx(x), sy(y), [214, 39, 40]);
    }

    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, W as u32, H as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| TrainError::Invalid(format!("png: {e}")))?;
        wr.write_image_data(&c.px).map_err(|e| TrainError::Invalid(format!("png: {e}")))?;
    }
    super::checkpoint::write_atomic(path, &bytes)
}
