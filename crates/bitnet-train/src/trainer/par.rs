//! Work shared out among the threads of the trainer's pool: a list split into one contiguous
//! range per thread with about the same cost in each.

use crate::error::{Result, TrainError};
use bitnet_core::kernels::ThreadPool;
use std::sync::Mutex;

/// Calls `f` on every item, the items split into `pool.n_threads()` contiguous ranges of about
/// equal total `cost`; returns the first error (by item order).
pub fn par_each<T: Sync>(
    pool: &ThreadPool,
    items: &[T],
    cost: impl Fn(&T) -> usize + Sync,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let n = pool.n_threads();
    if n == 1 || items.len() <= 1 {
        return items.iter().try_for_each(f);
    }
    let total: usize = items.iter().map(&cost).sum::<usize>().max(1);
    // Range `tid` starts at the first item whose cumulative cost reaches `total * tid / n`.
    let mut starts = vec![items.len(); n + 1];
    let mut acc = 0usize;
    let mut tid = 0;
    for (i, it) in items.iter().enumerate() {
        while tid < n && acc >= total * tid / n {
            starts[tid] = i;
            tid += 1;
        }
        acc += cost(it);
    }
    let errors: Vec<Mutex<Option<(usize, TrainError)>>> =
        (0..n).map(|_| Mutex::new(None)).collect();
    pool.run(&|t| {
        let (a, b) = (starts[t], starts[t + 1].max(starts[t]));
        for (i, item) in items.iter().enumerate().take(b).skip(a) {
            if let Err(e) = f(item) {
                *errors[t].lock().unwrap_or_else(|e| e.into_inner()) = Some((i, e));
                return;
            }
        }
    })
    .map_err(|e| TrainError::Invalid(format!("a training thread failed: {e}")))?;
    let mut first: Option<(usize, TrainError)> = None;
    for e in errors {
        if let Some((i, err)) = e.into_inner().unwrap_or_else(|e| e.into_inner()) {
            if first.as_ref().is_none_or(|(j, _)| i < *j) {
                first = Some((i, err));
            }
        }
    }
    first.map_or(Ok(()), |(_, e)| Err(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once_and_the_first_error_wins() {
        for threads in 1..=3 {
            let pool = ThreadPool::new(threads).unwrap();
            let items: Vec<usize> = (0..37).collect();
            let seen: Vec<AtomicUsize> = items.iter().map(|_| AtomicUsize::new(0)).collect();
            par_each(
                &pool,
                &items,
                |&i| i + 1,
                |&i| {
                    seen[i].fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            )
            .unwrap();
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1), "{threads} threads");
            let err = par_each(
                &pool,
                &items,
                |_| 1,
                |&i| {
                    if i == 5 || i == 30 {
                        Err(TrainError::Invalid(format!("item {i}")))
                    } else {
                        Ok(())
                    }
                },
            )
            .unwrap_err();
            assert_eq!(err.to_string(), "invalid argument: item 5");
        }
    }
}
