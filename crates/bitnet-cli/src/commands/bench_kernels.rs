//! `bitnet bench-kernels`: GEMV throughput (GB/s of packed weight bytes) of every ternary format
//! and kernel path on the microsoft/bitnet-b1.58-2B-4T projection shapes, beside a plain streaming
//! read of the same number of bytes and an f32 GEMV of the same shape, all measured in one run on
//! the same thread pool. With `--tokens N` (N > 1) it measures the prefill GEMM instead and
//! reports ternary multiply-accumulates per second.

use anyhow::{bail, Context, Result};
use bitnet_core::format::q8k::quantize_row_q8k_per_token;
use bitnet_core::kernels::baseline::{gemv_f32, stream_read};
use bitnet_core::kernels::{Isa, Kernels, Matmul, OwnedTernary, TernaryFormat};
use std::time::{Duration, Instant};

/// (rows = out features, cols = in features) of the 2B4T linear layers.
const SHAPES_2B4T: [(usize, usize); 4] = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Thread counts to measure, comma separated.
    #[arg(short = 't', long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Formats: tq2_0, tq1_0, i2_s, t2p (comma separated); all by default.
    #[arg(long, value_delimiter = ',')]
    formats: Vec<String>,
    /// Kernel paths: scalar, avx2, avx512, avx512vnni; every SIMD path this CPU has by default.
    #[arg(long, value_delimiter = ',')]
    isa: Vec<String>,
    /// Shapes as ROWSxCOLS (comma separated); the 2B4T shapes by default.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Minimum measuring time per row of the table, in milliseconds.
    #[arg(long, default_value_t = 300)]
    min_ms: u64,
    /// Rotate through copies of each matrix (and of the read buffer) totalling at least this
    /// many MiB, so weights come from main memory as in a whole model; 0 keeps one hot copy.
    #[arg(long, default_value_t = 0)]
    cold_mib: usize,
    /// Tokens per call: 1 measures GEMV (decode); more measures the prefill GEMM, reported in
    /// GMAC/s (rows × cols × tokens multiply-accumulates per second).
    #[arg(long, default_value_t = 1)]
    tokens: usize,
    /// Print one JSON object per measurement instead of the table.
    #[arg(long)]
    json: bool,
}

/// The median time of one call, over at least 5 calls and `min` of wall time.
fn median_secs(min: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || start.elapsed() < min {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (r, c) = s.split_once('x').with_context(|| format!("shape {s:?} is not ROWSxCOLS"))?;
    Ok((r.trim().parse()?, c.trim().parse()?))
}

/// The CPU's model name, as /proc/cpuinfo gives it.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split_once(':').map(|x| x.1.trim().to_string()).unwrap_or_default())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn run(args: Args) -> Result<()> {
    let shapes: Vec<(usize, usize)> = if args.shapes.is_empty() {
        SHAPES_2B4T.to_vec()
    } else {
        args.shapes.iter().map(|s| parse_shape(s)).collect::<Result<_>>()?
    };
    let formats: Vec<TernaryFormat> = if args.formats.is_empty() {
        TernaryFormat::ALL.to_vec()
    } else {
        let parse = |f: &String| TernaryFormat::from_name(f).with_context(|| format!("format {f}"));
        args.formats.iter().map(parse).collect::<Result<_>>()?
    };
    let isas: Vec<Isa> = if args.isa.is_empty() {
        Isa::ALL[1..].iter().copied().filter(|i| i.is_available()).collect()
    } else {
        let parse = |s: &String| Isa::from_name(s).with_context(|| format!("kernel path {s}"));
        args.isa.iter().map(parse).collect::<Result<_>>()?
    };
    if isas.is_empty() {
        bail!("no kernel path to measure (this CPU has no SIMD path; pass --isa scalar)");
    }
    let min = Duration::from_millis(args.min_ms);
    if args.tokens > 1 {
        return run_gemm(&args, &shapes, &formats, &isas, min);
    }
    if !args.json {
        println!("CPU: {} | best path: {}", cpu_model(), Isa::best().name());
        println!(
            "{:>10} {:>6} {:>10} {:>3} {:>9} {:>7} {:>7} {:>6} {:>7}",
            "shape", "format", "path", "thr", "us/call", "GB/s", "read", "%read", "x f32"
        );
    }
    for &(rows, cols) in &shapes {
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
        let xq = quantize_row_q8k_per_token(&x)?;
        let wf: Vec<f32> = (0..rows * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.01).collect();
        for &threads in &args.threads {
            let mut y = vec![0f32; rows];
            let f32_mm = Matmul::new(Kernels::scalar(), threads)?;
            let f32_copies = (args.cold_mib << 20).div_ceil(4 * wf.len()).max(1);
            let wfs = vec![wf.clone(); f32_copies];
            let mut k = 0;
            let f32_s = median_secs(min, || {
                k = (k + 1) % f32_copies;
                Ok(gemv_f32(f32_mm.pool(), &wfs[k], cols, &x, &mut y)?)
            })?;
            for &format in &formats {
                let w = OwnedTernary::random(format, rows, cols, 42)?;
                let bytes = w.matrix()?.weight_bytes();
                let copies = (args.cold_mib << 20).div_ceil(bytes).max(1);
                let ws = vec![w; copies];
                let ms = ws.iter().map(|w| w.matrix()).collect::<Result<Vec<_>, _>>()?;
                let words = bytes / 8;
                let buf = vec![1u64; words * copies];
                let mut next = 0;
                let read_s = median_secs(min, || {
                    next = (next + 1) % copies;
                    let part = &buf[next * words..(next + 1) * words];
                    std::hint::black_box(stream_read(f32_mm.pool(), part)?);
                    Ok(())
                })?;
                for &isa in &isas {
                    let mm = Matmul::new(Kernels::new(isa)?, threads)?;
                    let s = median_secs(min, || {
                        next = (next + 1) % copies;
                        Ok(mm.gemv(&ms[next], &xq, &mut y)?)
                    })?;
                    let gbs = bytes as f64 / s / 1e9;
                    let read_gbs = bytes as f64 / read_s / 1e9;
                    if args.json {
                        println!(
                            "{{\"rows\":{rows},\"cols\":{cols},\"format\":\"{}\",\"isa\":\"{}\",\
                             \"threads\":{threads},\"weight_bytes\":{bytes},\"cold_mib\":{},\
                             \"secs\":{s:e},\
                             \"gb_per_s\":{gbs:.3},\"read_gb_per_s\":{read_gbs:.3},\
                             \"f32_secs\":{f32_s:e}}}",
                            format.name(),
                            isa.name(),
                            args.cold_mib
                        );
                    } else {
                        println!(
                            "{:>10} {:>6} {:>10} {:>3} {:>9.1} {:>7.2} {:>7.2} {:>5.0}% {:>7.1}",
                            format!("{rows}x{cols}"),
                            format.name(),
                            isa.name(),
                            threads,
                            s * 1e6,
                            gbs,
                            read_gbs,
                            100.0 * read_s / s,
                            f32_s / s
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// `--tokens N`: the prefill GEMM of every format and path against N single-token GEMVs of the
/// same matrix, in the same run (the ratio is what tiling tokens together gains).
fn run_gemm(
    args: &Args,
    shapes: &[(usize, usize)],
    formats: &[TernaryFormat],
    isas: &[Isa],
    min: Duration,
) -> Result<()> {
    let n = args.tokens;
    if !args.json {
        println!("CPU: {} | best path: {} | {n} tokens", cpu_model(), Isa::best().name());
        println!(
            "{:>10} {:>6} {:>10} {:>3} {:>10} {:>8} {:>8}",
            "shape", "format", "path", "thr", "us/call", "GMAC/s", "x gemv"
        );
    }
    for &(rows, cols) in shapes {
        let mut xq = Vec::with_capacity(n * cols / 256);
        for t in 0..n {
            let x: Vec<f32> =
                (0..cols).map(|i| (((i + 31 * t) * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
            xq.extend(quantize_row_q8k_per_token(&x)?);
        }
        let nb = cols / 256;
        let mut y = vec![0f32; n * rows];
        for &threads in &args.threads {
            for &format in formats {
                let w = OwnedTernary::random(format, rows, cols, 42)?;
                let m = w.matrix()?;
                for &isa in isas {
                    let mm = Matmul::new(Kernels::new(isa)?, threads)?;
                    let gemm_s = median_secs(min, || Ok(mm.gemm(&m, &xq, n, &mut y)?))?;
                    let gemv_s = median_secs(min, || {
                        for (t, yt) in y.chunks_exact_mut(rows).enumerate() {
                            mm.gemv(&m, &xq[t * nb..(t + 1) * nb], yt)?;
                        }
                        Ok(())
                    })?;
                    let gmacs = (rows * cols * n) as f64 / gemm_s / 1e9;
                    if args.json {
                        println!(
                            "{{\"rows\":{rows},\"cols\":{cols},\"tokens\":{n},\"format\":\"{}\",\
                             \"isa\":\"{}\",\"threads\":{threads},\"secs\":{gemm_s:e},\
                             \"gmac_per_s\":{gmacs:.3},\"gemv_secs\":{gemv_s:e}}}",
                            format.name(),
                            isa.name()
                        );
                    } else {
                        println!(
                            "{:>10} {:>6} {:>10} {:>3} {:>10.1} {:>8.1} {:>8.2}",
                            format!("{rows}x{cols}"),
                            format.name(),
                            isa.name(),
                            threads,
                            gemm_s * 1e6,
                            gmacs,
                            gemv_s / gemm_s
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
