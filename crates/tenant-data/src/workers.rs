//! A fixed set of named threads for the SQLite work of tenant databases.
//!
//! Tokio's blocking pool spawns a thread whenever a job arrives and no idle thread is
//! waiting. A job's slot of the fair share is freed as the job returns, before its thread is
//! idle again, so the next job (already holding the freed slot) finds no idle thread and
//! gets a new one: under load the pool grew to ~40 threads for 4 slots, each with its own
//! stack, allocator caches and C-allocator arena for SQLite's memory (~20 MiB at the
//! 100-tenant benchmark; docs/benchmarks.md). Here the threads are exactly the slots: the
//! share decides who runs, these threads only run it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use crate::{DataError, Result};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The threads; they exit when the pool is dropped (after the jobs already sent).
#[derive(Debug)]
pub(crate) struct Workers {
    jobs: Mutex<Sender<Job>>,
}

impl Workers {
    /// Starts `threads` threads named `name`.
    pub(crate) fn start(threads: usize, name: &str) -> Result<Self> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || work(&rx))
                .map_err(|e| DataError::Unavailable(format!("cannot start a thread: {e}")))?;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `f` on one of the threads. A panic in `f` is an error, not a lost thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The job's CPU time goes to the request it is done for.
        let charge = tenantplane_cpu::current();
        let job: Job = Box::new(move || {
            let out =
                tenantplane_cpu::on_behalf(charge.as_ref(), || catch_unwind(AssertUnwindSafe(f)))
                    .unwrap_or_else(|_| Err(DataError::Db("a database job panicked".into())));
            // The caller may have gone (request cancelled): nothing to tell then.
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| DataError::Unavailable("the database threads have stopped".into()))?;
        rx.await
            .map_err(|_| DataError::Db("a database job was dropped".into()))?
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take one job: the others wait for the next.
        let next = jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_named_threads_and_survives_a_panic() {
        let w = Workers::start(2, "tp-test").unwrap();
        let name = w
            .run(|| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("tp-test-"));
        let err = w.run::<(), _>(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(err, DataError::Db(_)));
        // Both threads still serve.
        let mut all = Vec::new();
        for i in 0..8 {
            all.push(w.run(move || Ok(i * 2)));
        }
        let mut sum = 0;
        for f in all {
            sum += f.await.unwrap();
        }
        assert_eq!(sum, 56);
    }

    #[tokio::test]
    async fn threads_end_when_the_pool_is_dropped() {
        thread_local! {
            static KEEP: std::cell::RefCell<Option<std::sync::mpsc::Sender<()>>> =
                const { std::cell::RefCell::new(None) };
        }
        let w = Workers::start(1, "tp-drop").unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // The sender lives in the worker thread's local storage: dropped when it ends.
        w.run(move || {
            KEEP.with(|k| *k.borrow_mut() = Some(tx));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty),
            "the thread is alive while the pool is"
        );
        drop(w);
        assert_eq!(rx.recv(), Err(std::sync::mpsc::RecvError));
    }
}
