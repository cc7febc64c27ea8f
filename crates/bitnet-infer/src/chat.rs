//! Chat templates and conversations. [`PromptTemplate`] turns messages into a prompt; the
//! built-in ones are BitNet b1.58 2B4T's (LLaMA-3 vocabulary, `Role: text<|eot_id|>` turns) and
//! ChatML (SmolLM2, Qwen, ...), chosen from a model's Jinja template or, failing that, from the
//! special tokens its vocabulary has. The model's own Jinja template is rendered by
//! `bitnet-server`'s `template` module.

use crate::engine::{Engine, State};
use crate::error::{InferError, Result};
use crate::generate::{generate, GenerateOptions, Generation};
use crate::tokenizer::Tokenizer;

/// A chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|begin_of_text|>System: …<|eot_id|>User: …<|eot_id|>Assistant: …<|eot_id|>`
    BitNet,
    /// `<|im_start|>role\n…<|im_end|>\n`, ending with `<|im_start|>assistant\n`.
    ChatMl,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: content.into() }
    }
}

/// Renders a conversation as the prompt text, ending where the assistant's reply begins.
pub trait PromptTemplate: std::fmt::Debug + Send + Sync {
    fn render_prompt(&self, messages: &[Message]) -> Result<String>;
    /// What to call the template in messages.
    fn name(&self) -> &'static str;
}

impl PromptTemplate for ChatTemplate {
    fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        Ok(self.render(messages))
    }
    fn name(&self) -> &'static str {
        match self {
            ChatTemplate::BitNet => "built-in bitnet",
            ChatTemplate::ChatMl => "built-in chatml",
        }
    }
}

/// The tokens of a rendered chat prompt: BOS goes in front when the tokenizer adds one and the
/// text does not already begin with it (a model's template may write it itself).
pub fn encode_chat_prompt(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let has_bos = tok.bos.and_then(|b| tok.id_to_token(b)).is_some_and(|b| text.starts_with(&b));
    tok.encode(text, tok.add_bos && !has_bos)
}

impl ChatTemplate {
    /// Picks the template from a Jinja template string (when the model has one) and the vocabulary.
    pub fn detect(jinja: Option<&str>, tok: &Tokenizer) -> Option<Self> {
        if let Some(j) = jinja {
            if j.contains("<|im_start|>") {
                return Some(ChatTemplate::ChatMl);
            }
            if j.contains("<|eot_id|>") {
                return Some(ChatTemplate::BitNet);
            }
        }
        if tok.token_to_id("<|im_start|>").is_some() {
            Some(ChatTemplate::ChatMl)
        } else if tok.token_to_id("<|eot_id|>").is_some() {
            Some(ChatTemplate::BitNet)
        } else {
            None
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "bitnet" | "llama3" => Some(ChatTemplate::BitNet),
            "chatml" => Some(ChatTemplate::ChatMl),
            _ => None,
        }
    }

    /// The prompt text for `messages`, ending where the assistant's reply begins. BOS is not
    /// included: the caller adds it as a token when the model wants one.
    pub fn render(self, messages: &[Message]) -> String {
        let mut out = String::new();
        match self {
            ChatTemplate::BitNet => {
                for m in messages {
                    let role = capitalise(&m.role);
                    out.push_str(&format!("{role}: {}<|eot_id|>", m.content));
                }
                out.push_str("Assistant: ");
            }
            ChatTemplate::ChatMl => {
                for m in messages {
                    out.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
                }
                out.push_str("<|im_start|>assistant\n");
            }
        }
        out
    }
}

/// A conversation with a model: its messages, and the KV cache of the tokens already run. Each
/// turn renders the whole conversation and runs only what the cache does not already hold.
#[derive(Debug)]
pub struct ChatSession<'e> {
    engine: &'e Engine,
    tok: &'e Tokenizer,
    template: &'e dyn PromptTemplate,
    pub messages: Vec<Message>,
    state: State,
    /// The tokens the cache holds, in order.
    cached: Vec<u32>,
    /// Prompt tokens the last turn took from the cache instead of running them.
    reused: usize,
}

impl<'e> ChatSession<'e> {
    /// A session with a context of `ctx` tokens and an optional system message.
    pub fn new(
        engine: &'e Engine,
        tok: &'e Tokenizer,
        template: &'e dyn PromptTemplate,
        ctx: usize,
        system: Option<&str>,
    ) -> Result<Self> {
        let messages = system.map(|s| vec![Message::new("system", s)]).unwrap_or_default();
        let state = engine.new_state(ctx)?;
        Ok(Self { engine, tok, template, messages, state, cached: Vec::new(), reused: 0 })
    }

    /// Prompt tokens the last turn took from the cache instead of running them.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Forgets the conversation (the system message stays).
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.state.reset();
        self.cached.clear();
    }

    /// Adds the user's message, generates the reply (streamed to `on_text`), records it and
    /// returns the generation. An empty message is an error.
    pub fn turn(
        &mut self,
        user: &str,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        if user.trim().is_empty() {
            return Err(InferError::EmptyPrompt);
        }
        self.messages.push(Message::new("user", user));
        let full = match self.template.render_prompt(&self.messages) {
            Ok(text) => encode_chat_prompt(self.tok, &text),
            Err(e) => Err(e),
        };
        let full = match full {
            Ok(f) => f,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        if full.len() + opts.max_tokens > self.state.ctx() {
            self.messages.pop();
            return Err(InferError::ContextFull {
                tokens: full.len() + opts.max_tokens,
                ctx: self.state.ctx(),
            });
        }
        // Keep the cached prefix the new prompt shares; at least one token must run to give
        // the logits of the next one.
        let shared = self.cached.iter().zip(&full).take_while(|(a, b)| a == b).count();
        let keep = shared.min(full.len() - 1);
        self.state.truncate(keep);
        self.reused = keep;
        let g =
            generate(self.engine, &mut self.state, Some(self.tok), &full[keep..], opts, on_text);
        let g = match g {
            Ok(g) => g,
            Err(e) => {
                self.messages.pop();
                self.state.reset();
                self.cached.clear();
                return Err(e);
            }
        };
        // The cache holds the prompt and every generated token but possibly the last.
        self.cached = full;
        self.cached.extend_from_slice(&g.tokens);
        self.cached.truncate(self.state.pos());
        self.messages.push(Message::new("assistant", &g.text));
        Ok(g)
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitnet_template_matches_the_2b4t_format() {
        let m = [Message::new("system", "Be brief."), Message::new("user", "Hi")];
        assert_eq!(
            ChatTemplate::BitNet.render(&m),
            "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: "
        );
    }

    #[test]
    fn chatml_matches_smollm2s_reference_prompt() {
        let m = [Message::new("user", "What is the capital of France?")];
        assert_eq!(
            ChatTemplate::ChatMl.render(&m),
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
