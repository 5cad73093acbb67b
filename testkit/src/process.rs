//! Running commands and signalling processes, with std only (signals go through `kill(1)`).

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};

/// How often waits poll a child or a condition.
const POLL: Duration = Duration::from_millis(10);

/// A signal this kit can send to a process it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `SIGTERM`: ask the process to shut down gracefully.
    Term,
    /// `SIGKILL`: end the process at once, as a crash or power loss would.
    Kill,
    /// `SIGSTOP`: freeze the process (a hung daemon, a long GC pause).
    Stop,
    /// `SIGCONT`: let a stopped process run again.
    Cont,
    /// `SIGINT`: what Ctrl-C sends.
    Int,
    /// `SIGHUP`: by convention, reload configuration.
    Hup,
}

impl Signal {
    /// The signal's name without the `SIG` prefix, as `kill -s` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
            Signal::Int => "INT",
            Signal::Hup => "HUP",
        }
    }
}

/// Sends `signal` to the processes `pids` with `kill -s NAME PID...`.
pub(crate) fn send_signal(pids: &[u32], signal: Signal) -> Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("kill");
    cmd.arg("-s").arg(signal.name());
    cmd.args(pids.iter().map(u32::to_string));
    run_checked(&mut cmd).map(drop)
}

/// The command line of `cmd`, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Opens `path` for appending (creating it) twice over, as a daemon's stdout and stderr.
pub(crate) fn append_log(path: &Path) -> Result<(fs::File, fs::File)> {
    let opening = |e| TestkitError::io(format!("opening {}", path.display()), e);
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(opening)?;
    let err = out.try_clone().map_err(opening)?;
    Ok((out, err))
}

/// Runs `cmd` to completion, capturing its output, and returns it whatever the exit status.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| TestkitError::Spawn {
            program: describe(cmd),
            source,
        })
}

/// Runs `cmd` to completion and fails with its stderr unless it exits successfully.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    let output = run(cmd)?;
    check(cmd, output)
}

/// Runs `cmd` with `input` on its stdin and fails with its stderr unless it exits successfully.
pub(crate) fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| TestkitError::Spawn {
            program: describe(cmd),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| TestkitError::io(format!("writing stdin of `{}`", describe(cmd)), e))?;
        // Dropping stdin closes it, so the command sees end of input.
    }
    let output = child
        .wait_with_output()
        .map_err(|e| TestkitError::io(format!("waiting for `{}`", describe(cmd)), e))?;
    check(cmd, output)
}

fn check(cmd: &Command, output: Output) -> Result<Output> {
    if output.status.success() {
        Ok(output)
    } else {
        Err(TestkitError::Command {
            command: describe(cmd),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// A `Command` that runs `program` inside network namespace `netns` (`ip netns exec`), or
/// directly when `netns` is `None`.
///
/// `ip netns exec` replaces itself with the program, so the child's pid is the program's.
pub(crate) fn command_in(netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = child
            .try_wait()
            .map_err(|e| TestkitError::io(format!("waiting for pid {}", child.id()), e))?;
        if status.is_some() || Instant::now() >= deadline {
            return Ok(status);
        }
        thread::sleep(POLL);
    }
}

/// Ends `child` with SIGKILL and reaps it. Errors are ignored: this runs in `Drop`, and a child
/// that already exited is fine.
pub(crate) fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Sends SIGTERM (and SIGCONT, in case the child is stopped), waits up to `grace`, then SIGKILL.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(status) = child
        .try_wait()
        .map_err(|e| TestkitError::io(format!("waiting for pid {}", child.id()), e))?
    {
        return Ok(status);
    }
    let pid = child.id();
    // The child may exit between try_wait and kill; a failing kill(1) is then harmless.
    let _ = send_signal(&[pid], Signal::Term);
    let _ = send_signal(&[pid], Signal::Cont);
    if let Some(status) = wait_child(child, grace)? {
        return Ok(status);
    }
    let _ = child.kill();
    child
        .wait()
        .map_err(|e| TestkitError::io(format!("waiting for pid {pid}"), e))
}

/// Whether a process with this pid exists and has not exited: a zombie (exited, not yet reaped
/// by a parent that may never do so) counts as dead.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// The last `lines` lines of the file at `path`, or a note saying it could not be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Polls `probe` every `every` until it returns `Some`, or fails after `timeout`.
pub(crate) fn poll_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if start.elapsed() >= timeout {
            return Err(TestkitError::Timeout {
                what: what.to_owned(),
                waited: start.elapsed(),
            });
        }
        thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_joins_program_and_arguments() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "x", "true"]);
        assert_eq!(describe(&cmd), "ip netns exec x true");
    }

    #[test]
    fn failing_commands_report_their_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let err = run_checked(&mut cmd).expect_err("sh exits 3");
        let message = err.to_string();
        assert!(message.contains("boom"), "{message}");
        assert!(message.contains("sh -c"), "{message}");
    }

    #[test]
    fn exited_processes_are_not_alive_even_unreaped() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        // Exited but not reaped yet: a zombie.
        let zombie = poll_until("true to exit", Duration::from_secs(5), POLL, || {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.contains(") Z").then_some(())
        });
        assert!(zombie.is_ok());
        assert!(!pid_alive(pid));
        child.wait().expect("reap");
        assert!(!pid_alive(pid));
    }

    #[test]
    fn signals_reach_children() {
        let mut child = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        send_signal(&[child.id()], Signal::Term).expect("kill -s TERM");
        let status = wait_child(&mut child, Duration::from_secs(5))
            .expect("wait")
            .expect("sleep ends on SIGTERM");
        assert!(!status.success());
    }
}
