//! `bitnet chat`: an interactive conversation with the model's chat template, streaming each
//! reply. Lines starting with `/` are commands: `/reset` forgets the conversation, `/exit` ends.

use super::generate::SamplingArgs;
use super::model_args::ModelArgs;
use anyhow::Result;
use bitnet_infer::chat::ChatSession;
use bitnet_infer::generate::GenerateOptions;
use std::io::{BufRead, Write};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// jinja (the model's own), chatml or bitnet (default: the model's own, else the built-in
    /// one its vocabulary suggests).
    #[arg(long)]
    pub template: Option<String>,
    /// Most tokens per reply.
    #[arg(long, short = 'n', default_value_t = 512)]
    pub max_tokens: usize,
    /// Context size (KV cache) of the whole conversation.
    #[arg(long, short = 'c', default_value_t = 4096)]
    pub ctx: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: Args) -> Result<()> {
    let sampler = a.sampling.config()?;
    let (engine, tok) = a.model.load_with_tokenizer()?;
    let template = bitnet_server::template::chat_template(
        &engine,
        &tok,
        &a.model.model,
        a.template.as_deref(),
    )?;
    let ctx = a.ctx.min(engine.config().max_ctx.max(1));
    let mut chat = ChatSession::new(&engine, &tok, &*template, ctx, a.system.as_deref())?;
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler,
        stop_ids: tok.stop_ids.clone(),
        stop_strings: Vec::new(),
        record_top: 0,
    };
    eprintln!(
        "chatting with {} ({} template); /reset, /exit",
        a.model.model.display(),
        template.name()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                chat.reset();
                eprintln!("[conversation forgotten]");
                continue;
            }
            _ => {}
        }
        let mut out = std::io::stdout().lock();
        let result = chat.turn(&line, &opts, |t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
            true
        });
        writeln!(out)?;
        match result {
            Ok(g) => eprintln!(
                "[{} tokens at {:.1} tok/s; {} prompt tokens reused from the cache]",
                g.tokens.len(),
                g.tokens.len() as f64 / g.decode_s.max(1e-9),
                chat.reused()
            ),
            // A full context or a tokenizer error ends the turn, not the conversation.
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}
