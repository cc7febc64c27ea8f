//! The engine's thread: continuous batching over a fixed set of slots. Each step runs one
//! forward of every generating sequence's next token plus prompt chunks up to the token budget;
//! requests join at the next step and leave when done or when their client has gone.
//!
//! HTTP handlers only send [`Job`]s through a bounded queue and read [`Event`]s from each job's
//! own channel: the engine and the KV caches belong to this thread alone.

use crate::api::GenParams;
use crate::error::ApiError;
use crate::metrics::Metrics;
use bitnet_infer::engine::{BatchScratch, SeqStep, MAX_BATCH};
use bitnet_infer::generate::{first_stop, held_back, TextStream};
use bitnet_infer::sampling::{apply_presence_frequency, log_softmax, sample, top_n, Rng};
use bitnet_infer::{Engine, KvType, State, Tokenizer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// One request for the engine.
#[derive(Debug)]
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    pub events: mpsc::UnboundedSender<Event>,
    pub queued: Instant,
}

/// Why a generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A generated token's log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// What the engine tells a request's handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token (`logprob` when asked for) and the text it releases, which may be
    /// empty: incomplete UTF-8 and what may begin a stop string are held back.
    Token {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// The end: the text still held back, and the counts.
    Done {
        text: String,
        finish: FinishReason,
        usage: Usage,
    },
    Error(ApiError),
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens taken from a slot's cache instead of being run.
    pub cached_tokens: usize,
}

/// The settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Sequences generated at once.
    pub slots: usize,
    /// Context of each slot, in tokens.
    pub slot_ctx: usize,
    pub kv: KvType,
    /// Tokens one step runs at most (decode tokens plus prompt chunks).
    pub step_budget: usize,
}

/// A request being served.
#[derive(Debug)]
struct Active {
    job: Job,
    /// Prompt tokens in the cache so far.
    fed: usize,
    cached_tokens: usize,
    generated: Vec<u32>,
    /// The token sampled last, to run next step.
    next: Option<u32>,
    rng: Rng,
    stream: TextStream,
    /// Text decoded but not yet sent (it may begin a stop string).
    pending: String,
    last_token: Option<Instant>,
}

/// A KV cache slot and the tokens it holds.
#[derive(Debug)]
struct Slot {
    state: State,
    cached: Vec<u32>,
    active: Option<Active>,
}

/// The scheduler, run by [`Scheduler::run`] on its own thread.
#[derive(Debug)]
pub struct Scheduler {
    engine: Engine,
    tok: Arc<Tokenizer>,
    cfg: SchedulerConfig,
    slots: Vec<Slot>,
    scratch: BatchScratch,
    metrics: Arc<Metrics>,
    /// Set when in-flight requests are to be cancelled (shutdown).
    cancel: Arc<AtomicBool>,
}

impl Scheduler {
    pub fn new(
        engine: Engine,
        tok: Arc<Tokenizer>,
        cfg: SchedulerConfig,
        metrics: Arc<Metrics>,
        cancel: Arc<AtomicBool>,
    ) -> bitnet_infer::Result<Self> {
        let slots = (0..cfg.slots)
            .map(|_| {
                let state = engine.new_state_with(cfg.slot_ctx, cfg.kv)?;
                Ok(Slot { state, cached: Vec::new(), active: None })
            })
            .collect::<bitnet_infer::Result<_>>()?;
        metrics.slots_total.store(cfg.slots as u64, Ordering::Relaxed);
        Ok(Self { engine, tok, cfg, slots, scratch: BatchScratch::default(), metrics, cancel })
    }

    fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    /// Serves jobs until the queue is closed and nothing is in flight.
    pub fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                self.cancel_all(&mut queue);
            }
            self.metrics.slots_busy.store(self.busy() as u64, Ordering::Relaxed);
            // Take queued jobs while slots are free; wait for one when nothing runs.
            while self.busy() < self.slots.len() {
                let job = if self.busy() == 0 {
                    match queue.blocking_recv() {
                        Some(j) => j,
                        None => return,
                    }
                } else {
                    match queue.try_recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    }
                };
                self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
                if self.cancel.load(Ordering::Relaxed) {
                    let _ = job.events.send(Event::Error(ApiError::Unavailable(STOPPING)));
                    continue;
                }
                if !job.events.is_closed() {
                    self.admit(job);
                }
            }
            self.drop_cancelled();
            self.metrics.slots_busy.store(self.busy() as u64, Ordering::Relaxed);
            if self.busy() > 0 {
                self.step();
            }
        }
    }

    /// Answers every queued and running job that the server is stopping.
    fn cancel_all(&mut self, queue: &mut mpsc::Receiver<Job>) {
        while let Ok(job) = queue.try_recv() {
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = job.events.send(Event::Error(ApiError::Unavailable(STOPPING)));
        }
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                let _ = a.job.events.send(Event::Error(ApiError::Unavailable(STOPPING)));
            }
        }
    }

    /// Puts `job` in the free slot whose cache shares the longest prefix with its prompt.
    fn admit(&mut self, job: Job) {
        let shared =
            |s: &Slot| s.cached.iter().zip(&job.prompt).take_while(|(a, b)| a == b).count();
        let Some(i) = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none())
            .max_by_key(|&i| (shared(&self.slots[i]), std::cmp::Reverse(i)))
        else {
            return;
        };
        let slot = &mut self.slots[i];
        // At least the prompt's last token runs, to give the logits of the first new one.
        let keep = shared(slot).min(job.prompt.len().saturating_sub(1));
        slot.state.truncate(keep);
        slot.cached.truncate(keep);
        let rng = Rng::new(job.params.sampler.seed);
        slot.active = Some(Active {
            job,
            fed: keep,
            cached_tokens: keep,
            generated: Vec::new(),
            next: None,
            rng,
            stream: TextStream::default(),
            pending: String::new(),
            last_token: None,
        });
    }

    /// Frees the slots of requests whose client has gone.
    fn drop_cancelled(&mut self) {
        for slot in &mut self.slots {
            if slot.active.as_ref().is_some_and(|a| a.job.events.is_closed()) {
                slot.active = None;
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One engine step: every generating sequence's next token, then prompt chunks (oldest
    /// request first) while the budget lasts.
    fn step(&mut self) {
        let budget = self.cfg.step_budget.clamp(1, MAX_BATCH);
        let mut plan: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        let mut used = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(a) = &s.active {
                if a.next.is_some() {
                    plan.push((i, 0..0));
                    used += 1;
                }
            }
        }
        let mut prefill: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.as_ref().is_some_and(|a| a.next.is_none()))
            .collect();
        prefill.sort_by_key(|&i| self.slots[i].active.as_ref().map(|a| a.job.queued));
        for i in prefill {
            if used >= budget {
                break;
            }
            let a = self.slots[i].active.as_ref().expect("filtered on active");
            let n = (a.job.prompt.len() - a.fed).min(budget - used);
            plan.push((i, a.fed..a.fed + n));
            used += n;
        }
        plan.sort_by_key(|&(i, _)| i);
        // The forward.
        let mut steps = Vec::with_capacity(plan.len());
        let mut wants = Vec::new();
        let mut p = plan.iter().peekable();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some((_, range)) = p.next_if(|(j, _)| *j == i) else { continue };
            let a = slot.active.as_ref().expect("planned slots are active");
            let (tokens, logits) = match a.next.as_ref() {
                Some(t) => (std::slice::from_ref(t), true),
                None => (&a.job.prompt[range.clone()], range.end == a.job.prompt.len()),
            };
            if logits {
                wants.push(i);
            }
            steps.push(SeqStep { state: &mut slot.state, tokens, logits });
        }
        let result = self.engine.forward_many(&mut steps, &mut self.scratch);
        drop(steps);
        let logits = match result {
            Ok(l) => l.to_vec(),
            Err(e) => {
                // The batch failed as a whole: its requests are told, their caches forgotten.
                let err = ApiError::from(e);
                for (i, _) in &plan {
                    let slot = &mut self.slots[*i];
                    slot.state.reset();
                    slot.cached.clear();
                    if let Some(a) = slot.active.take() {
                        let _ = a.job.events.send(Event::Error(err.clone()));
                    }
                }
                return;
            }
        };
        // What each slot's cache now holds.
        for (i, range) in &plan {
            let slot = &mut self.slots[*i];
            let a = slot.active.as_mut().expect("planned slots are active");
            match a.next.take() {
                Some(t) => slot.cached.push(t),
                None => {
                    slot.cached.extend_from_slice(&a.job.prompt[range.clone()]);
                    a.fed = range.end;
                }
            }
        }
        let vocab = self.engine.config().vocab_size;
        for (&i, row) in wants.iter().zip(logits.chunks_exact(vocab)) {
            self.next_token(i, row);
        }
    }

    /// Samples slot `i`'s next token from `logits` and tells its client.
    fn next_token(&mut self, i: usize, logits: &[f32]) {
        let now = Instant::now();
        let slot = &mut self.slots[i];
        let a = slot.active.as_mut().expect("slots with logits are active");
        let p = &a.job.params;
        let mut l = logits.to_vec();
        for &(id, b) in &p.logit_bias {
            l[id as usize] += b;
        }
        if p.ignore_eos {
            // As llama-server does: end-of-generation tokens cannot be sampled.
            for &id in &self.tok.stop_ids {
                if let Some(v) = l.get_mut(id as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        apply_presence_frequency(&mut l, &a.generated, p.presence_penalty, p.frequency_penalty);
        // The repeat penalty's window: the last `repeat_last_n` tokens of prompt and reply.
        let window = p.sampler.repeat_last_n.min(a.job.prompt.len() + a.generated.len());
        let from_reply = window.min(a.generated.len());
        let mut recent = a.job.prompt[a.job.prompt.len() - (window - from_reply)..].to_vec();
        recent.extend_from_slice(&a.generated[a.generated.len() - from_reply..]);
        let token = sample(&l, &p.sampler, &recent, a.rng.next_f32());
        match a.last_token {
            None => self.metrics.ttft.observe((now - a.job.queued).as_secs_f64()),
            Some(t) => self.metrics.itl.observe((now - t).as_secs_f64()),
        }
        a.last_token = Some(now);
        if self.tok.stop_ids.contains(&token) {
            self.finish(i, FinishReason::Stop, true);
            return;
        }
        let logprob = p.logprobs.map(|n| {
            let lp = log_softmax(logits);
            TokenLogprob { token, logprob: lp[token as usize], top: top_n(&lp, n) }
        });
        a.generated.push(token);
        self.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
        let new = a.stream.next(&self.tok, &a.generated).unwrap_or_default();
        a.pending.push_str(&new);
        if let Some(cut) = first_stop(&a.pending, &a.job.params.stop_strings) {
            a.pending.truncate(cut);
            let _ = a.job.events.send(Event::Token { text: String::new(), logprob });
            self.finish(i, FinishReason::Stop, false);
            return;
        }
        let ready = a.pending.len() - held_back(&a.pending, &a.job.params.stop_strings);
        let text: String = a.pending.drain(..ready).collect();
        let _ = a.job.events.send(Event::Token { text, logprob });
        let full = a.job.params.max_tokens.is_some_and(|m| a.generated.len() >= m);
        if full || slot.state.pos() >= slot.state.ctx() {
            self.finish(i, FinishReason::Length, true);
        } else {
            a.next = Some(token);
        }
    }

    /// Ends slot `i`'s request: the text still held back, the counts, and the slot is free.
    /// `flush` sends what the text stream held back as incomplete UTF-8 (not after a stop
    /// string, whose cut ends the text).
    fn finish(&mut self, i: usize, finish: FinishReason, flush: bool) {
        let slot = &mut self.slots[i];
        let Some(mut a) = slot.active.take() else { return };
        if flush {
            let all = self.tok.decode(&a.generated).unwrap_or_default();
            let sent = a.stream.emitted();
            if all.len() > sent && all.is_char_boundary(sent) {
                a.pending.push_str(&all[sent..]);
            }
            if let Some(cut) = first_stop(&a.pending, &a.job.params.stop_strings) {
                a.pending.truncate(cut);
            }
        }
        let usage = Usage {
            prompt_tokens: a.job.prompt.len(),
            completion_tokens: a.generated.len(),
            cached_tokens: a.cached_tokens,
        };
        self.metrics.prompt_tokens.fetch_add(usage.prompt_tokens as u64, Ordering::Relaxed);
        // The gauge is right by the time the client hears the end.
        self.metrics.slots_busy.store(self.busy() as u64, Ordering::Relaxed);
        let _ = a.job.events.send(Event::Done { text: a.pending, finish, usage });
    }
}

/// What requests are told when the server stops under them.
pub const STOPPING: &str = "the server is shutting down";
