//! The `bitnet` command line: one file per subcommand under `commands/`.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "bitnet", version, about = "Train, convert, run and benchmark BitNet models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark the ternary GEMV kernels on the bitnet-b1.58-2B-4T shapes.
    BenchKernels(commands::bench_kernels::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BenchKernels(args) => commands::bench_kernels::run(args),
    }
}
