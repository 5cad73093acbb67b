//! The one error type of the test kit.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while setting up or driving a harness.
///
/// Messages are meant to be read in a failing test's output, so they carry the command, its
/// stderr or the tail of a daemon's log.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program that was run.
        program: String,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },
    /// A command ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the message.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it wrote on stderr (trimmed).
        stderr: String,
    },
    /// A file or process operation failed (temporary directories, log files, waiting).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An etcd process exited before it answered healthy.
    #[error("etcd {name} exited ({status}) before it became healthy; log tail:\n{log_tail}")]
    EtcdExited {
        /// The member name (`--name`).
        name: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its log.
        log_tail: String,
    },
    /// An etcd process kept running but never answered healthy within the deadline.
    #[error("etcd {name} not healthy at {endpoint} after {waited:?}; log tail:\n{log_tail}")]
    EtcdNotReady {
        /// The member name (`--name`).
        name: String,
        /// The client URL that was polled.
        endpoint: String,
        /// How long it was polled.
        waited: Duration,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A tool printed something this kit does not understand.
    #[error("unexpected output from `{command}`: {output}")]
    Parse {
        /// The command line.
        command: String,
        /// What it printed (stdout and stderr).
        output: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited: Duration,
    },
    /// A program or file the harness needs is not there.
    #[error("missing {what}")]
    Missing {
        /// What is missing, and how to get it.
        what: String,
    },
    /// An operation needs a process that is not running (already killed or stopped).
    #[error("{what} is not running")]
    NotRunning {
        /// The process, for the message.
        what: String,
    },
}

impl TestkitError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
