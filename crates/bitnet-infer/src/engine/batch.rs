//! Several sequences in one forward (continuous batching): each brings its own state (KV cache
//! and position) and a few tokens — one to decode, or a chunk of its prompt. The linear layers
//! run all the tokens through the integer tiles together, so the weights are read once for the
//! whole batch; attention runs per sequence over its own cache.

use super::{Engine, Scratch, Seg, State, MAX_BATCH};
use crate::error::{InferError, Result};

/// One sequence's share of a batched forward.
#[derive(Debug)]
pub struct SeqStep<'a> {
    pub state: &'a mut State,
    /// The tokens to run at the state's next positions (at least one).
    pub tokens: &'a [u32],
    /// Whether the logits after the last of `tokens` are wanted (a prompt chunk that is not the
    /// prompt's last needs none).
    pub logits: bool,
}

/// The buffers of batched forwards, reused from one step to the next (a sequence's own
/// scratch is for its single-sequence forwards).
#[derive(Debug, Default)]
pub struct BatchScratch {
    s: Scratch,
}

impl Engine {
    /// Runs every step's tokens in one forward of at most [`MAX_BATCH`] tokens in all, and
    /// returns the logits of the steps that want them, in order: (wanted, vocab). Each state's
    /// position advances by its tokens when the whole forward succeeds; on an error none moves.
    ///
    /// A sequence's logits are the same, bit for bit, as [`Engine::forward`] gives it alone.
    pub fn forward_many<'s>(
        &self,
        steps: &mut [SeqStep<'_>],
        scratch: &'s mut BatchScratch,
    ) -> Result<&'s [f32]> {
        let vocab = self.config().vocab_size;
        let mut total = 0;
        for st in steps.iter() {
            if st.tokens.is_empty() {
                return Err(InferError::EmptyPrompt);
            }
            if let Some(&id) = st.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(InferError::TokenOutOfRange { id, vocab });
            }
            let end = st.state.pos + st.tokens.len();
            if end > st.state.ctx {
                return Err(InferError::ContextFull { tokens: end, ctx: st.state.ctx });
            }
            total += st.tokens.len();
        }
        if total > MAX_BATCH {
            return Err(InferError::BadConfig(format!(
                "a batched forward of {total} tokens (at most {MAX_BATCH})"
            )));
        }
        if total == 0 {
            scratch.s.logits.clear();
            return Ok(&scratch.s.logits);
        }
        let mut segs: Vec<Seg<'_>> = steps
            .iter_mut()
            .map(|st| Seg {
                ctx: st.state.ctx,
                pos0: st.state.pos,
                kv: st.state.kv.borrow(),
                tokens: st.tokens,
                logits: st.logits,
            })
            .collect();
        self.run_segments(&mut segs, &mut scratch.s, false)?;
        drop(segs);
        for st in steps.iter_mut() {
            st.state.pos += st.tokens.len();
        }
        Ok(&scratch.s.logits)
    }
}
