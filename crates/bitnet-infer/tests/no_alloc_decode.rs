//! Decoding a token allocates nothing once the state has seen its context: the thread pool, the
//! kernels and the engine reuse their buffers (a global allocator counts every allocation).

use bitnet_core::format::GgmlType;
use bitnet_infer::export::{preset, write_random_model};
use bitnet_infer::{Engine, KvType, Logits, Model};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_allocate_nothing() {
    let before = ALLOCS.load(Ordering::Relaxed);
    let probe = std::hint::black_box(vec![1u8; 10]);
    assert!(ALLOCS.load(Ordering::Relaxed) > before && probe.len() == 10, "the counter counts");
    let dir = tempfile::tempdir().unwrap();
    for (ty, head) in [
        (GgmlType::TQ2_0, GgmlType::Q6K),
        (GgmlType::TQ1_0, GgmlType::Q8_0),
        (GgmlType::I2S, GgmlType::F16),
    ] {
        let path = dir.path().join(format!("tiny-{ty:?}.gguf"));
        write_random_model(&path, &preset("tiny").unwrap(), ty, head, 7).unwrap();
        for (threads, kv) in [(1, KvType::F32), (2, KvType::F32), (2, KvType::F16)] {
            let engine = Engine::new(Model::load_gguf(&path).unwrap(), threads).unwrap();
            let ctx = 64;
            let mut st = engine.new_state_with(ctx, kv).unwrap();
            // A first pass over the whole context grows every buffer to its largest size.
            engine.forward(&mut st, &[1, 2, 3], Logits::Last).unwrap();
            for t in 3..ctx as u32 {
                engine.forward(&mut st, &[t], Logits::Last).unwrap();
            }
            st.truncate(3);
            let before = ALLOCS.load(Ordering::Relaxed);
            for t in 3..ctx as u32 {
                engine.forward(&mut st, &[t % 100], Logits::Last).unwrap();
            }
            let n = ALLOCS.load(Ordering::Relaxed) - before;
            assert_eq!(
                n, 0,
                "{ty:?}, {head:?} head, {threads} threads, {kv:?} cache: {n} allocations"
            );
        }
    }
}
