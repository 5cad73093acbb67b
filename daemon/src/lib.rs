//! Process start-up and shutdown, the same for both daemons: logging, the runtime, and a run
//! that ends on SIGTERM or SIGINT with a graceful stop of the controller; and, in [`http`], the
//! HTTP listener both serve, bounded against stalled clients.

pub mod http;
pub mod logging;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::{error, info};

/// How long the controller may take for its graceful stop.
const CONTROLLER_GRACE: Duration = Duration::from_secs(3);

/// Sets up logging as `log` says (to stderr), runs `run` on a single-threaded runtime, and
/// turns its result into the exit code.
pub fn main<F: Future<Output = anyhow::Result<()>>>(log: &logging::LogArgs, run: F) -> ExitCode {
    logging::init(log);
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

/// A task that lives as long as the daemon, next to its controller (the HTTP listener, the
/// speaker's responders): its end, for whatever reason, is a failure of the daemon.
#[derive(Debug)]
pub struct Companion {
    name: &'static str,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Companion {
    /// Spawns `work` as the companion `name` (a noun for messages: "HTTP listener").
    pub fn spawn(
        name: &'static str,
        work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> Companion {
        Companion {
            name,
            task: tokio::spawn(work),
        }
    }

    /// Why its end is a failure.
    fn failure(name: &str, ended: Result<anyhow::Result<()>, JoinError>) -> anyhow::Error {
        match ended {
            Ok(Ok(())) => anyhow::anyhow!("the {name} stopped"),
            Ok(Err(e)) => e.context(format!("the {name} failed")),
            Err(e) if e.is_panic() => anyhow::anyhow!("the {name} panicked"),
            Err(_) => anyhow::anyhow!("the {name} was cancelled"),
        }
    }
}

/// Resolves when the first of `companions` ends, with its index and result.
async fn first_end(companions: &mut [Companion]) -> (usize, Result<anyhow::Result<()>, JoinError>) {
    std::future::poll_fn(|cx| {
        for (i, c) in companions.iter_mut().enumerate() {
            if let Poll::Ready(ended) = Pin::new(&mut c.task).poll(cx) {
                return Poll::Ready((i, ended));
            }
        }
        Poll::Pending
    })
    .await
}

/// Waits for SIGTERM, SIGINT, the controller's end or the end of one of its companions; then
/// asks the controller to stop (`stop`) and lets it finish its graceful stop (stop answering or
/// writing, then end the lease) within three seconds. The first error wins. A companion that
/// ended is taken out of `companions`; the others are left for [`finish`].
pub async fn supervise(
    mut control: JoinHandle<anyhow::Result<()>>,
    companions: &mut Vec<Companion>,
    stop: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    // Biased: when the controller ends, its companions may end with it; its reason is the one
    // to report.
    let early: Option<anyhow::Error> = tokio::select! {
        biased;
        _ = term.recv() => { info!("SIGTERM: stopping"); None }
        _ = int.recv() => { info!("SIGINT: stopping"); None }
        r = &mut control => {
            // Its result is taken here: it must not be waited for again.
            return r.context("controller task").and_then(|r| r).context("controller stopped");
        }
        (i, ended) = first_end(companions) => {
            let name = companions.remove(i).name;
            let e = Companion::failure(name, ended);
            error!(error = %format!("{e:#}"), "stopping: nothing is answered or written without it");
            Some(e)
        }
    };
    stopped(control, stop, early).await
}

/// Stops the controller and waits for its graceful stop; `early` (a companion's failure) wins
/// over its result.
async fn stopped(
    control: JoinHandle<anyhow::Result<()>>,
    stop: &watch::Sender<bool>,
    early: Option<anyhow::Error>,
) -> anyhow::Result<()> {
    let _ = stop.send(true);
    let stopped = match tokio::time::timeout(CONTROLLER_GRACE, control).await {
        Ok(r) => r.context("controller task").and_then(|r| r),
        Err(_) => Err(anyhow::anyhow!(
            "the controller did not stop within {} s",
            CONTROLLER_GRACE.as_secs()
        )),
    };
    match early {
        Some(e) => Err(e),
        None => stopped,
    }
}

/// Lets the companions that are still running end on their own (they watch the same stop
/// signal) within `grace`, then aborts the rest.
pub async fn finish(companions: Vec<Companion>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for mut c in companions {
        if tokio::time::timeout_at(deadline, &mut c.task)
            .await
            .is_err()
        {
            c.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `supervise` within a bound: one that missed the companion's end would wait for a signal.
    async fn timeout(supervised: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(10), supervised)
            .await
            .expect("supervise noticed the end")
    }

    /// A controller that runs until it is told to stop, and says so.
    fn controller(
        stop: &watch::Sender<bool>,
    ) -> (JoinHandle<anyhow::Result<()>>, watch::Receiver<bool>) {
        let mut rx = stop.subscribe();
        let (done_tx, done_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            rx.wait_for(|s| *s).await?;
            done_tx.send(true)?;
            Ok(())
        });
        (task, done_rx)
    }

    #[tokio::test]
    async fn a_companion_that_ends_stops_the_controller_and_fails_the_daemon() {
        let (stop, _) = watch::channel(false);
        let (control, done) = controller(&stop);
        let mut stop_rx = stop.subscribe();
        let mut companions = vec![
            Companion::spawn("HTTP listener", async move {
                stop_rx.wait_for(|s| *s).await?;
                Ok(())
            }),
            Companion::spawn("responders", async { Ok(()) }),
        ];
        let e = timeout(supervise(control, &mut companions, &stop))
            .await
            .expect_err("a failure");
        assert_eq!(format!("{e:#}"), "the responders stopped");
        assert!(
            *done.borrow(),
            "the controller was stopped and finished its stop"
        );
        assert_eq!(companions.len(), 1, "the ended one is taken out");
        assert_eq!(companions[0].name, "HTTP listener");
        finish(companions, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_companion_that_panics_or_fails_is_named_with_its_error() {
        for (work, want) in [
            (
                Companion::spawn("responders", async { panic!("boom") }),
                "the responders panicked",
            ),
            (
                Companion::spawn("HTTP listener", async {
                    Err(anyhow::anyhow!("address in use"))
                }),
                "the HTTP listener failed: address in use",
            ),
        ] {
            let (stop, _) = watch::channel(false);
            let (control, done) = controller(&stop);
            let mut companions = vec![work];
            let e = timeout(supervise(control, &mut companions, &stop))
                .await
                .expect_err("a failure");
            assert_eq!(format!("{e:#}"), want);
            assert!(*done.borrow());
            assert!(companions.is_empty());
        }
    }

    #[tokio::test]
    async fn the_controllers_end_is_the_daemons_and_leaves_the_companions_running() {
        let (stop, _) = watch::channel(false);
        let control = tokio::spawn(async { Err(anyhow::anyhow!("etcd refused the lease")) });
        let mut stop_rx = stop.subscribe();
        let mut companions = vec![Companion::spawn("HTTP listener", async move {
            stop_rx.wait_for(|s| *s).await?;
            Ok(())
        })];
        let e = supervise(control, &mut companions, &stop)
            .await
            .expect_err("the controller's error");
        assert_eq!(
            format!("{e:#}"),
            "controller stopped: etcd refused the lease"
        );
        assert_eq!(companions.len(), 1);
        assert!(!companions[0].task.is_finished());
        // Stopped by the signal they share, they end within the grace.
        let _ = stop.send(true);
        finish(companions, Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn companions_that_ignore_the_stop_are_aborted_after_the_grace() {
        let c = Companion::spawn("stuck", std::future::pending());
        let started = tokio::time::Instant::now();
        finish(vec![c], Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
