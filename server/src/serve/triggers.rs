//! The reload triggers: `RELOAD=true`'s file watcher and `SIGHUP` send on one channel to the
//! reload worker, which runs them one reload at a time. [`Triggers::stop`] ends all three.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use crate::lifecycle;
use crate::service::App;

/// The running triggers and their worker.
pub(super) struct Triggers {
    worker: JoinHandle<()>,
    sighup: Option<JoinHandle<()>>,
    /// Watching while held.
    watcher: Option<Box<dyn notify::Watcher + Send>>,
}

/// Starts the reload worker, the file watcher (with `RELOAD=true`) and the `SIGHUP` listener.
pub(super) fn start(app: &App) -> std::io::Result<Triggers> {
    let (tx, rx) = mpsc::channel(1);
    let watcher = watch_model(app, tx.clone());
    #[cfg(unix)]
    let sighup = Some(reload_on_sighup(tx)?);
    #[cfg(not(unix))]
    let sighup = {
        drop(tx);
        None
    };
    let worker = lifecycle::reload_worker(app.models.clone(), rx);
    let worker = tokio::spawn(worker.with_current_subscriber());
    Ok(Triggers {
        worker,
        sighup,
        watcher,
    })
}

impl Triggers {
    /// Stops watching and listening, and ends the worker (a reload it started runs to its end
    /// as a task of its own, and finds the slot draining).
    pub(super) async fn stop(self) {
        drop(self.watcher);
        let tasks = [Some(self.worker), self.sighup];
        for task in tasks.into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// With `RELOAD=true`, watches `MODEL_PATH`; the watcher lives as long as the value returned.
fn watch_model(
    app: &App,
    tx: mpsc::Sender<&'static str>,
) -> Option<Box<dyn notify::Watcher + Send>> {
    if !app.config.model.reload {
        return None;
    }
    let Some(path) = &app.config.model.path else {
        tracing::warn!(
            "RELOAD=true watches MODEL_PATH, which is not set: the built-in model is not watched"
        );
        return None;
    };
    match lifecycle::watch(path, tx) {
        Ok(w) => {
            tracing::info!(path = %path.display(), "watching the model file (RELOAD=true)");
            Some(w)
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot watch the model file; SIGHUP and the repository API still reload");
            None
        }
    }
}

/// `SIGHUP` asks for a reload (as it does of nginx or Prometheus).
#[cfg(unix)]
fn reload_on_sighup(tx: mpsc::Sender<&'static str>) -> std::io::Result<JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let task = async move {
        while hup.recv().await.is_some() {
            let _ = tx.try_send("sighup");
        }
    };
    Ok(tokio::spawn(task.with_current_subscriber()))
}
