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
    /// Prompt-processing and generation tokens/s of a model, as llama-bench reports them.
    Bench(commands::bench::Args),
    /// Benchmark the ternary GEMV kernels on the bitnet-b1.58-2B-4T shapes.
    BenchKernels(commands::bench_kernels::Args),
    /// Quantization-aware training (no arguments: the tiny preset on bundled Shakespeare).
    Train(Box<commands::train::Args>),
    /// Tokenizer tools.
    #[command(subcommand)]
    Tokenizer(commands::tokenizer::Command),
    /// Complete a prompt with a model (GGUF file or Hugging Face directory).
    Generate(Box<commands::generate::Args>),
    /// Chat with a model interactively, with its chat template.
    Chat(Box<commands::chat::Args>),
    /// An OpenAI-compatible HTTP server with continuous batching.
    Serve(Box<commands::serve::Args>),
    /// Perplexity of a text file (llama.cpp's method).
    Ppl(commands::ppl::Args),
    /// Convert a BitNet model: HF/GGUF to GGUF (tq2_0, tq1_0, i2_s) or to HF packed.
    Convert(commands::convert::Args),
    /// Write a GGUF model of a real shape with random ternary weights (for benchmarks).
    RandomModel(commands::random_model::Args),
    /// Training data tools.
    #[command(subcommand)]
    Data(commands::data::Command),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(args) => commands::bench::run(args),
        Command::BenchKernels(args) => commands::bench_kernels::run(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Tokenizer(cmd) => commands::tokenizer::run(cmd),
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Generate(args) => commands::generate::run(*args),
        Command::Chat(args) => commands::chat::run(*args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Ppl(args) => commands::ppl::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::RandomModel(args) => commands::random_model::run(args),
    }
}
