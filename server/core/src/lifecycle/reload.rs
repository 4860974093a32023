//! Reloads: a new model file goes live while the server serves.
//!
//! Triggers: `RELOAD=true` watches `MODEL_PATH` ([`watch`]: inotify on its directory, so an
//! atomic rename or a Kubernetes volume's symlink swap is seen; polling where events are not
//! available), `SIGHUP`, and `POST /v2/repository/models/{m}/load`. Each becomes one
//! [`reload`], one at a time: wait until the file stops changing, load it on the side, validate
//! it (the model loader's checks, and the same class count as the model serving), start new
//! lanes and warm every batch size, then swap the pipeline in one write. Requests that already
//! hold the old pipeline finish on it (its batcher drains and stops when the last one lets go);
//! every later request goes to the new one, so no request sees an error or a mix. A file that
//! fails any step is refused: the old model keeps serving and `/ready` stays 200.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use notify::Watcher;
use tokio::sync::mpsc;
use tracing::instrument::WithSubscriber;

use super::{content_version, LoadError, Models};
use crate::telemetry::metrics::ResultLabel;

/// Why a reload did not take place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The first model is still loading, or the server is draining.
    #[error("the server is not serving a model yet, or is shutting down")]
    NotServing,
    /// The new model's class count differs from the serving one's; the old model keeps serving.
    #[error("the new model has {new} classes; the one serving has {serving}")]
    ClassCount {
        /// The new model's.
        new: usize,
        /// The serving model's.
        serving: usize,
    },
    /// The new file could not be loaded; the old model keeps serving.
    #[error(transparent)]
    Load(Arc<LoadError>),
}

impl ReloadError {
    fn panicked(e: tokio::task::JoinError) -> Self {
        ReloadError::Load(Arc::new(LoadError::Panicked(e.to_string())))
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new content serves now.
    Swapped {
        /// Its [`content_version`].
        version: String,
    },
    /// The file holds what already serves; nothing changed.
    Unchanged {
        /// The serving version.
        version: String,
    },
}

/// Runs triggers from `rx` (the file watcher, `SIGHUP`) one reload at a time, however many
/// arrive: a burst of file events while a reload runs leads to one more reload, not one each.
/// A trigger that arrives while the first model is still loading waits for it.
pub async fn reload_worker(models: Arc<Models>, mut rx: mpsc::Receiver<&'static str>) {
    while let Some(cause) = rx.recv().await {
        if !models.slot.serving().await {
            return; // draining
        }
        while rx.try_recv().is_ok() {}
        let _ = reload(&models, cause).await;
    }
}

/// Loads `MODEL_PATH` again and swaps it in (see the module). `cause` is for the log. Runs to
/// its end even if the caller stops waiting: the work is a task of its own.
pub async fn reload(models: &Arc<Models>, cause: &'static str) -> Result<Reloaded, ReloadError> {
    let models = models.clone();
    let task =
        tokio::spawn(async move { reload_now(&models, cause).await }.with_current_subscriber());
    task.await.unwrap_or_else(|e| Err(ReloadError::panicked(e)))
}

/// A reload that several callers await; each gets its result.
pub(super) type SharedReload = Shared<BoxFuture<'static, Result<Reloaded, ReloadError>>>;

/// A repository load: joins the load that is waiting to start, if any, so concurrent requests
/// make one reload and all get its result. A load whose callers all left before it started is
/// never run; once started it runs to its end (as [`reload`]).
pub async fn load(models: &Arc<Models>) -> Result<Reloaded, ReloadError> {
    let joined = models
        .pending_load
        .lock()
        .get_or_insert_with(|| {
            // The waiting future lives in `models`: it holds them weakly, or an abandoned one
            // would keep them alive for good (a cycle).
            let weak = Arc::downgrade(models);
            let reloading = models.reloading.clone();
            async move {
                let turn = reloading.lock_owned().await;
                let models = weak.upgrade().ok_or(ReloadError::NotServing)?;
                // Started: later requests make a reload of their own (the file may change).
                models.pending_load.lock().take();
                let task = async move {
                    let _one_at_a_time = turn;
                    reload_locked(&models, "api").await
                };
                tokio::spawn(task.with_current_subscriber())
                    .await
                    .unwrap_or_else(|e| Err(ReloadError::panicked(e)))
            }
            .boxed()
            .shared()
        })
        .clone();
    Caller {
        models,
        joined: Some(joined),
    }
    .wait()
    .await
}

/// One caller of a repository load. When the last caller leaves before the load has started,
/// the load is dropped, and its place in the queue for the reload lock with it: an abandoned
/// load, left queued, would be handed the lock with nobody to run it, and every reload after it
/// (file, `SIGHUP`) would wait for good.
struct Caller<'a> {
    models: &'a Models,
    joined: Option<SharedReload>,
}

impl Caller<'_> {
    async fn wait(mut self) -> Result<Reloaded, ReloadError> {
        match self.joined.as_mut() {
            Some(joined) => joined.await,
            None => Err(ReloadError::NotServing),
        }
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        drop(self.joined.take());
        let abandoned = {
            let mut pending = self.models.pending_load.lock();
            // Only the stored handle is left: no caller waits for a load that has not started.
            match pending.as_ref().and_then(Shared::strong_count) {
                Some(1) => pending.take(),
                _ => None,
            }
        };
        drop(abandoned); // outside the lock
    }
}

async fn reload_now(models: &Arc<Models>, cause: &'static str) -> Result<Reloaded, ReloadError> {
    let _one_at_a_time = models.reloading.lock().await;
    reload_locked(models, cause).await
}

/// The reload itself, under the `reloading` lock.
async fn reload_locked(models: &Arc<Models>, cause: &'static str) -> Result<Reloaded, ReloadError> {
    let slot = &models.slot;
    // Only what is compared: holding the pipeline would keep its queue open through a shutdown.
    let (serving, classes) = match slot.pipeline() {
        Ok(p) => (p.version.clone(), p.classes),
        Err(_) => return Err(ReloadError::NotServing),
    };
    let started = Instant::now();
    if let Some(path) = models.parts.config.model.path.clone() {
        settle(&path).await;
        let same = tokio::task::spawn_blocking(move || content_version(&path))
            .await
            .ok()
            .and_then(Result::ok);
        if same.as_deref() == Some(serving.as_str()) {
            tracing::info!(cause, version = %serving, "model file unchanged; not reloaded");
            return Ok(Reloaded::Unchanged { version: serving });
        }
    }
    if slot.draining() {
        return Err(ReloadError::NotServing);
    }
    let outcome = match models.build().await {
        Ok((pipeline, thread)) if pipeline.classes != classes => {
            let new = pipeline.classes;
            slot.retire(pipeline, thread);
            Err(ReloadError::ClassCount {
                new,
                serving: classes,
            })
        }
        Ok((pipeline, thread)) => {
            let version = pipeline.version.clone();
            if !slot.install(pipeline, thread) {
                return Err(ReloadError::NotServing); // shutting down: dropped, not swapped
            }
            Ok(version)
        }
        Err(e) => Err(ReloadError::Load(Arc::new(e))),
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    let result = if outcome.is_ok() {
        "success"
    } else {
        "failure"
    };
    models
        .parts
        .metrics
        .model_reloads
        .get_or_create(&ResultLabel { result })
        .inc();
    match outcome {
        Ok(version) => {
            tracing::info!(cause, old = %serving, new = %version, elapsed_s, "model reloaded");
            Ok(Reloaded::Swapped { version })
        }
        Err(why) => {
            tracing::error!(cause, error = %why, elapsed_s, "model reload refused; the old model keeps serving");
            Err(why)
        }
    }
}

/// Waits (up to 10 s) until `path` exists and its size and modification time hold still for
/// 300 ms, so a file still being written (or removed and about to be written) is not read.
async fn settle(path: &Path) {
    let stamp = |p: &Path| -> Option<(u64, SystemTime)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.len(), m.modified().ok()?))
    };
    // tokio's clock: the waits are logic, tested on the paused clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = stamp(path);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stamp(path);
        if now.is_some() && now == last {
            return;
        }
        last = now;
    }
}

/// Watches `path`'s directory and sends on `tx` when the file, or a Kubernetes volume's `..data`
/// link, changes (coalesced: the channel holds one pending trigger). Uses inotify where it can,
/// else polls every second.
/// The watcher stops when the returned value is dropped.
pub fn watch(
    path: &Path,
    tx: mpsc::Sender<&'static str>,
) -> notify::Result<Box<dyn Watcher + Send>> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(std::ffi::OsStr::to_os_string);
    let handler = move |event: notify::Result<notify::Event>| {
        let ours = |p: &PathBuf| {
            let f = p.file_name();
            f == name.as_deref() || f.is_some_and(|f| f.to_string_lossy().starts_with("..data"))
        };
        if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(ours)) {
            let _ = tx.try_send("file");
        }
    };
    let mut watcher: Box<dyn Watcher + Send> =
        match notify::RecommendedWatcher::new(handler.clone(), notify::Config::default()) {
            Ok(w) => Box::new(w),
            Err(e) => {
                tracing::warn!(error = %e, "no file events here; polling MODEL_PATH every second");
                let config = notify::Config::default().with_poll_interval(Duration::from_secs(1));
                Box::new(notify::PollWatcher::new(handler, config)?)
            }
        };
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Parts;

    fn models() -> Arc<Models> {
        let config = crate::Config::from_lookup(|_| None).unwrap();
        let metrics = crate::telemetry::metrics::Metrics::new();
        let admission = crate::batching::admission::Admission::new(4, metrics.queue_depth.clone());
        Arc::new(Models::new(Parts {
            config,
            metrics,
            admission,
            dispatch: tracing::Dispatch::none(),
            wrap_backend: None,
            batcher_fault: None,
        }))
    }

    #[tokio::test]
    async fn a_load_whose_callers_left_before_it_started_gives_up_its_place() {
        let models = models();
        let running = models.reloading.clone().lock_owned().await; // a reload in progress
        let caller = tokio::spawn({
            let models = models.clone();
            async move { load(&models).await }
        });
        while models.pending_load.lock().is_none() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await; // queued for the lock
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert!(
            models.pending_load.lock().is_none(),
            "the abandoned load is dropped"
        );
        drop(running);
        // Nobody holds the lock: the next reload (a file change, SIGHUP) gets it.
        assert!(models.reloading.try_lock().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_is_read_once_it_holds_still_and_a_missing_one_is_waited_for_10_s() {
        let dir = std::env::temp_dir().join(format!("gw-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.onnx");
        std::fs::write(&path, b"still").unwrap();
        let start = tokio::time::Instant::now();
        settle(&path).await;
        assert_eq!(start.elapsed(), Duration::from_millis(300));
        let start = tokio::time::Instant::now();
        settle(&dir.join("absent.onnx")).await;
        assert_eq!(start.elapsed(), Duration::from_millis(10_200));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
