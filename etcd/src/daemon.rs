//! Process start-up and shutdown, the same for both daemons: logging, the runtime, and a run
//! that ends on SIGTERM or SIGINT with a graceful stop of the controller; and, in [`http`], the
//! HTTP listener both serve, bounded against stalled clients.

pub mod http;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Sets up logging (`FERROLB_LOG`, default `info`, to stderr), runs `run` on a single-threaded
/// runtime, and turns its result into the exit code.
pub fn main<F: Future<Output = anyhow::Result<()>>>(run: F) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERROLB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGTERM, SIGINT, the controller's end or the HTTP listener's failure; then asks
/// the controller to stop (`stop`) and lets it finish its graceful stop (stop answering or
/// writing, then end the lease) within three seconds. The first error wins.
pub async fn supervise(
    mut control: JoinHandle<anyhow::Result<()>>,
    http: &mut JoinHandle<std::io::Result<()>>,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let early: Option<anyhow::Result<()>> = tokio::select! {
        _ = term.recv() => { info!("SIGTERM: stopping"); None }
        _ = int.recv() => { info!("SIGINT: stopping"); None }
        r = &mut control => {
            // Its result is taken here: it must not be waited for again.
            return r.context("controller task").and_then(|r| r).context("controller stopped");
        }
        r = &mut *http => Some(match r {
            Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP listener stopped")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP listener failed")),
            Err(e) => Err(anyhow::Error::new(e).context("the HTTP task")),
        }),
    };
    let _ = stop.send(true);
    let stopped = match tokio::time::timeout(Duration::from_secs(3), control).await {
        Ok(r) => r.context("controller task").and_then(|r| r),
        Err(_) => Err(anyhow::anyhow!("the controller did not stop within 3 s")),
    };
    match early {
        Some(Err(e)) => Err(e),
        _ => stopped,
    }
}
