//! Chat templates: BitNet b1.58 2B4T's (LLaMA-3 vocabulary, `Role: text<|eot_id|>` turns) and
//! ChatML (SmolLM2, Qwen, ...). The template is chosen from the GGUF `tokenizer.chat_template`
//! or, failing that, from the special tokens the vocabulary has.

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
