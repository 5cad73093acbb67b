//! A TCP port inside a lab host that leads to a server outside the lab: the real
//! `kube-apiserver` listens on the test's loopback, which a process in a lab namespace cannot
//! reach. The listening socket is made inside the host's network namespace (a socket stays in
//! the namespace it was made in) by a thread that enters it and ends; the forwarding runs on a
//! thread of the test's own namespace, so its connections go to the test's loopback.

use std::fs::File;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

use crate::error::{Result, TestkitError};

/// A port on 127.0.0.1 inside a lab host forwarding every connection to a target outside the
/// lab. Stops (and closes every forwarded connection) when dropped.
#[derive(Debug)]
pub struct Forward {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    /// Listens on 127.0.0.1 in the network namespace `/run/netns/<netns>` and forwards to
    /// `target` in this process's namespace.
    pub(crate) fn start(netns: &str, target: SocketAddr) -> Result<Forward> {
        let path = format!("/run/netns/{netns}");
        let ns = File::open(&path).map_err(|e| TestkitError::io(format!("open {path}"), e))?;
        let listener = std::thread::scope(|s| {
            s.spawn(|| -> std::io::Result<std::net::TcpListener> {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .join()
        })
        .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")))
        .map_err(|e| TestkitError::io(format!("listen on 127.0.0.1 in {netns}"), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestkitError::io("local address", e))?
            .port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| TestkitError::io("forwarding runtime", e))?;
        let (stop, stopped) = oneshot::channel();
        let thread =
            std::thread::spawn(move || runtime.block_on(forward(listener, target, stopped)));
        Ok(Forward {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The port on 127.0.0.1 inside the lab host.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts until `stopped`, each connection copied both ways to `target` on a task of its own;
/// the runtime's end (when this returns) ends them all.
async fn forward(
    listener: std::net::TcpListener,
    target: SocketAddr,
    mut stopped: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("ferrolb-testkit: forwarding to {target}: cannot register the listener");
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }
    }
}
