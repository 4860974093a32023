//! The decode pool: a fixed set of OS threads for CPU-heavy work (image decoding and resizing),
//! fed through a bounded channel, so the async executor never blocks on it.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender, TrySendError};
use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

/// A bounded pool of blocking threads.
pub struct BlockingPool {
    tx: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

/// Why a task did not produce a result.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full, or the pool is shut down.
    #[error("the decode pool is saturated or stopped")]
    Busy,
    /// The task panicked (its worker carries on).
    #[error("the task panicked")]
    Panicked,
}

impl BlockingPool {
    /// `threads` workers named `{name}-N`, with room for `queue` waiting tasks.
    pub fn new(name: &str, threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = bounded::<Task>(queue.max(1));
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        for task in rx {
                            // A panicking task (a decoder bug on a hostile image) costs its own
                            // request only: the worker lives on, the caller sees Panicked.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                        }
                    })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            tx: Some(tx),
            threads,
        })
    }

    /// Runs `f` on a worker and resolves with its result. The task is skipped when the caller
    /// stops waiting before a worker picks it up (the client went away).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        // The task runs under the caller's subscriber and inside its span, so what it logs and
        // the spans it makes belong to the request that sent it.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let span = tracing::Span::current();
        let task: Task = Box::new(move || {
            if !tx.is_closed() {
                let out = tracing::dispatcher::with_default(&dispatch, || span.in_scope(f));
                let _ = tx.send(out);
            }
        });
        let sender = self.tx.as_ref().ok_or(PoolError::Busy)?;
        sender.try_send(task).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => PoolError::Busy,
        })?;
        rx.await.map_err(|_| PoolError::Panicked)
    }
}

impl BlockingPool {
    /// Tasks waiting for a worker (tests synchronise on it instead of sleeping).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for BlockingPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_tasks_and_refuses_when_full() {
        let pool = std::sync::Arc::new(BlockingPool::new("t", 1, 1).unwrap());
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        // Occupy the one worker, fill the one queue slot; the next task is refused at once.
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    blocked.recv().ok()
                })
                .await
            }
        });
        started.await.unwrap();
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 1).await }
        });
        while pool.queued() < 1 {
            tokio::task::yield_now().await; // the second task is in the queue, not sleeping on it
        }
        assert!(
            pool.run(|| 3).await.is_err(),
            "a third task must be refused"
        );
        release.send(()).unwrap();
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_task_fails_alone_and_the_worker_lives_on() {
        let pool = BlockingPool::new("p", 1, 1).unwrap();
        let r = pool.run(|| -> u32 { panic!("injected decoder bug") }).await;
        assert_eq!(r, Err(PoolError::Panicked));
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), pool.run(|| 7)).await;
        assert_eq!(next.expect("the one worker still runs tasks"), Ok(7));
    }
}
