//! Loading and validating a revision off the async threads, within a time budget.
//!
//! The daemons run on a current-thread runtime: CPU work done on it (parsing and validating a
//! configuration of 100,000 keys, say) holds every task, the HTTP listener's `/healthz` and the
//! etcd lease renewals included, and the leader key lapses. A [`Checker`] runs such work on
//! tokio's blocking pool instead, and gives up waiting after its budget: the revision is then
//! refused (the caller keeps the one in force). A blocking task cannot be stopped, so a job
//! that overran keeps its thread until it ends; until then the checker starts no other job
//! ([`CheckError::Busy`]), so a series of slow revisions never piles up threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Why a job gave no result.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    /// The job did not finish within the budget; its result will be dropped.
    #[error("reading and validating it took longer than {0:?}; refusing it")]
    TooSlow(Duration),
    /// A job that overran its budget still runs; no new one is started before it ends.
    #[error(
        "a revision that took longer than {0:?} is still being validated; not starting another"
    )]
    Busy(Duration),
    /// The job panicked (a bug; the revision is refused like an invalid one).
    #[error("the validation task failed: {0}")]
    Failed(String),
}

/// Runs jobs on the blocking pool, one at a time, each within `budget`.
#[derive(Debug)]
pub struct Checker {
    budget: Duration,
    /// Set when the job that overran has ended.
    overran: Option<Arc<AtomicBool>>,
}

/// Marks its flag when dropped: when the job returns or unwinds.
struct Done(Arc<AtomicBool>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Checker {
    /// A checker that waits at most `budget` for each job.
    pub fn new(budget: Duration) -> Checker {
        Checker {
            budget,
            overran: None,
        }
    }

    /// The budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether a job that overran its budget still runs.
    pub fn busy(&mut self) -> bool {
        if self
            .overran
            .as_ref()
            .is_some_and(|done| done.load(Ordering::Acquire))
        {
            self.overran = None;
        }
        self.overran.is_some()
    }

    /// Runs `job` on the blocking pool and waits for it, at most the budget.
    pub async fn run<T, F>(&mut self, job: F) -> Result<T, CheckError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if self.busy() {
            return Err(CheckError::Busy(self.budget));
        }
        let done = Arc::new(AtomicBool::new(false));
        let guard = Done(done.clone());
        let handle = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            job()
        });
        match tokio::time::timeout(self.budget, handle).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CheckError::Failed(e.to_string())),
            Err(_) => {
                self.overran = Some(done);
                Err(CheckError::TooSlow(self.budget))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;

    /// A job that blocks its thread until told to end, and says when it started.
    fn blocking_job() -> (
        impl FnOnce() -> u32 + Send + 'static,
        mpsc::Receiver<()>,
        mpsc::Sender<()>,
    ) {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let job = move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            7
        };
        (job, started, release)
    }

    // The daemons' runtime flavour: one thread for every task.
    #[tokio::test(flavor = "current_thread")]
    async fn other_tasks_run_while_a_job_blocks() {
        let ticks = Arc::new(AtomicU32::new(0));
        let counter = ticks.clone();
        // Stands for the lease renewals and the HTTP listener.
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (job, started, release) = blocking_job();
        let mut checker = Checker::new(Duration::from_secs(600));
        let watcher = async {
            // Wait (without blocking the runtime) until the job runs, then until the ticker
            // has made progress while it still runs; only then let it end.
            while started.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let at_start = ticks.load(Ordering::Relaxed);
            while ticks.load(Ordering::Relaxed) < at_start + 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            release.send(()).expect("release");
        };
        let (result, ()) = tokio::join!(checker.run(job), watcher);
        assert_eq!(result, Ok(7));
        ticker.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_over_budget_is_refused_and_blocks_new_jobs_until_it_ends() {
        let mut checker = Checker::new(Duration::from_millis(50));
        let (job, started, release) = blocking_job();
        assert_eq!(
            checker.run(job).await,
            Err(CheckError::TooSlow(Duration::from_millis(50)))
        );
        started.recv().expect("it ran");
        assert!(checker.busy());
        assert_eq!(
            checker.run(|| 1).await,
            Err(CheckError::Busy(Duration::from_millis(50))),
            "no second job while the first still runs"
        );
        release.send(()).expect("release");
        while checker.busy() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(checker.run(|| 2).await, Ok(2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_is_an_error() {
        let mut checker = Checker::new(Duration::from_secs(600));
        let r: Result<(), _> = checker.run(|| panic!("boom")).await;
        assert!(matches!(r, Err(CheckError::Failed(_))), "{r:?}");
        assert!(!checker.busy());
    }
}
