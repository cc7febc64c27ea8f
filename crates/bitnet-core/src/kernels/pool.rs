//! A fixed thread pool that lives as long as the model: `n - 1` workers plus the calling thread.
//! A call publishes a job through an atomic pointer, workers spin briefly then park on a condition
//! variable, and the caller runs its own share before waiting: no thread is spawned, nothing is
//! allocated and no lock is taken per call unless a worker has gone to sleep.

use crate::{CoreError, Result};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins before a worker parks (about tens of microseconds).
const SPIN_LIMIT: u32 = 20_000;

type Job<'a> = &'a (dyn Fn(usize) + Sync + 'a);

struct Shared {
    epoch: AtomicUsize,
    pending: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// The current job: a pointer to a [`Job`] on the stack of [`ThreadPool::run`], valid from
    /// the epoch bump until `pending` reaches zero.
    job: AtomicPtr<()>,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    wake: Condvar,
    sleep: Mutex<()>,
}

/// A pool of `n_threads` (the caller counts as thread 0).
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("n_threads", &self.n_threads).finish()
    }
}

impl ThreadPool {
    /// Starts `n_threads - 1` workers (`n_threads` of 0 is taken as 1).
    pub fn new(n_threads: usize) -> Result<Self> {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            job: AtomicPtr::new(std::ptr::null_mut()),
            sleepers: AtomicUsize::new(0),
            wake: Condvar::new(),
            sleep: Mutex::new(()),
        });
        let mut workers = Vec::with_capacity(n_threads - 1);
        for idx in 1..n_threads {
            let s = Arc::clone(&shared);
            let h = std::thread::Builder::new()
                .name(format!("bitnet-worker-{idx}"))
                .spawn(move || worker_loop(&s, idx))
                .map_err(|e| CoreError::ThreadPool(format!("spawning worker {idx}: {e}")))?;
            workers.push(h);
        }
        Ok(Self { shared, workers, n_threads })
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(thread_index)` once on every thread of the pool and returns when all are done.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) -> Result<()> {
        if self.n_threads == 1 {
            f(0);
            return Ok(());
        }
        let s = &*self.shared;
        let job: Job<'_> = f;
        s.job.store(&job as *const Job<'_> as *mut (), Ordering::Relaxed);
        s.panicked.store(false, Ordering::Relaxed);
        s.pending.store(self.n_threads - 1, Ordering::Release);
        // SeqCst with the workers' `sleepers` increment: a worker that read the old epoch is
        // counted before this bump, so it is woken below.
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) != 0 {
            let _g = s.sleep.lock().expect("sleep lock");
            s.wake.notify_all();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if mine.is_err() || s.panicked.load(Ordering::Relaxed) {
            return Err(CoreError::ThreadPool("a job panicked".into()));
        }
        Ok(())
    }
}

impl ThreadPool {
    /// Calls `f(i, chunk)` for every `chunk`-long piece `i` of `data` (a shorter last piece
    /// included), the pieces split into one contiguous range per thread. A single piece runs on
    /// the calling thread alone, with no wake-up of the workers.
    pub fn for_each_chunk_mut<T: Send>(
        &self,
        data: &mut [T],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) -> Result<()> {
        let chunk = chunk.max(1);
        let pieces = data.len().div_ceil(chunk);
        if pieces <= 1 || self.n_threads == 1 {
            data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
            return Ok(());
        }
        let (len, base) = (data.len(), SharedMut(data.as_mut_ptr()));
        let n_threads = self.n_threads;
        self.run(&|tid| {
            let (p0, p1) = (pieces * tid / n_threads, pieces * (tid + 1) / n_threads);
            for i in p0..p1 {
                let (a, b) = (i * chunk, ((i + 1) * chunk).min(len));
                // SAFETY: pieces `p0..p1` belong to this thread alone and lie inside `data`,
                // which stays mutably borrowed until `run` returns.
                let c = unsafe { std::slice::from_raw_parts_mut(base.get().add(a), b - a) };
                f(i, c);
            }
        })
    }
}

/// The base of a slice whose disjoint pieces the threads of one [`ThreadPool::run`] borrow: each
/// thread must touch only its own pieces, and the slice must outlive the run.
pub struct SharedMut<T>(*mut T);
impl<T> std::fmt::Debug for SharedMut<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedMut").field(&self.0).finish()
    }
}
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: each thread touches only its own pieces, and `T: Send` lets them move across threads.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}
impl<T> SharedMut<T> {
    pub fn new(p: *mut T) -> Self {
        SharedMut(p)
    }

    pub fn get(self) -> *mut T {
        self.0
    }
}

fn worker_loop(s: &Shared, idx: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen && spins < SPIN_LIMIT {
            std::hint::spin_loop();
            spins += 1;
        }
        if s.epoch.load(Ordering::Acquire) == seen {
            let mut g = s.sleep.lock().expect("sleep lock");
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            while s.epoch.load(Ordering::SeqCst) == seen {
                g = s.wake.wait(g).expect("sleep lock");
            }
            s.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        seen = s.epoch.load(Ordering::Acquire);
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        let ptr = s.job.load(Ordering::Relaxed) as *const Job<'_>;
        if !ptr.is_null() {
            // SAFETY: `run` stored `ptr` (a `Job` on its stack) before the epoch bump this thread
            // acquired, and keeps it and its closure alive until `pending` reaches zero, which
            // happens only after this call returns.
            let f = unsafe { *ptr };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(idx))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _g = self.shared.sleep.lock();
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// The range of `0..n` that thread `tid` of `n_threads` owns: contiguous, in multiples of 8.
pub(crate) fn thread_range(n: usize, n_threads: usize, tid: usize) -> (usize, usize) {
    let per = n.div_ceil(n_threads).next_multiple_of(8);
    ((tid * per).min(n), ((tid + 1) * per).min(n))
}

/// A pointer to an output that the threads of one [`ThreadPool::run`] write at disjoint indices.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: users write only the indices of their own `thread_range`, and `run` returns only after
// every thread has finished.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::{thread_range, ThreadPool};

    #[test]
    fn chunks_are_each_visited_once_with_their_index() {
        for threads in 1..4 {
            let pool = ThreadPool::new(threads).unwrap();
            for (len, chunk) in [(0, 3), (1, 3), (3, 3), (10, 3), (100, 7)] {
                let mut v = vec![0usize; len];
                pool.for_each_chunk_mut(&mut v, chunk, &|i, c| {
                    c.iter_mut().enumerate().for_each(|(j, x)| *x += i * chunk + j + 1)
                })
                .unwrap();
                assert_eq!(v, (1..=len).collect::<Vec<_>>(), "{threads} threads, {len}/{chunk}");
            }
        }
    }

    /// Jobs published while the workers spin and after they have parked both reach every thread.
    #[test]
    fn every_thread_runs_every_job_awake_or_parked() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = ThreadPool::new(3).unwrap();
        for round in 0..40 {
            let ran = AtomicUsize::new(0);
            pool.run(&|tid| {
                ran.fetch_or(1 << tid, Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(ran.into_inner(), 0b111, "round {round}");
            if round % 10 == 9 {
                // Long enough for the workers to stop spinning and park.
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    }

    #[test]
    fn thread_ranges_cover_every_index_once() {
        for n in [1, 7, 8, 9, 100, 2560, 6912] {
            for threads in 1..5 {
                let mut next = 0;
                for tid in 0..threads {
                    let (a, b) = thread_range(n, threads, tid);
                    assert_eq!(a, next.min(n));
                    next = b;
                }
                assert_eq!(next, n);
            }
        }
    }
}
