//! Watch streams: one JSON line per event, replayed from the history and then live, with
//! bookmarks, the end of a `timeoutSeconds`, and `410 Expired` after a compaction.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::resources::ResourceType;
use super::selector::Filter;
use super::status::StatusError;
use super::store::{Change, ChangeKind, Notice, Store, WatchFrom};

/// How often a watch with `allowWatchBookmarks=true` gets a bookmark (real servers: about a
/// minute; shorter here so tests see them).
pub(crate) const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// How many encoded events may wait for a slow client.
const BUFFER: usize = 256;

/// What a watch request asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    /// Which objects.
    pub filter: Filter,
    /// From where.
    pub from: WatchFrom,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: the current objects, then a bookmark marking their end.
    pub send_initial_events: bool,
    /// `timeoutSeconds`: the stream ends after it.
    pub timeout: Option<Duration>,
}

/// Starts a watch of `rt` and answers with its stream.
pub(crate) fn respond(store: &Store, rt: &'static ResourceType, request: WatchRequest) -> Response {
    let from = if request.send_initial_events {
        WatchFrom::Current
    } else {
        request.from
    };
    let (tx, rx) = mpsc::channel::<Result<String, Infallible>>(BUFFER);
    match store.subscribe(rt, &request.filter, from) {
        Ok(subscription) => {
            tokio::spawn(async move {
                let mut watch = Watch {
                    rt,
                    request,
                    tx,
                    last_rv: subscription.rv,
                };
                watch.run(subscription.initial, subscription.receiver).await;
            });
        }
        Err(expired) => {
            // The real server also answers 200 and reports the expiry as the first event.
            let line = event_line("ERROR", &expired.to_json());
            tokio::spawn(async move {
                let _ = tx.send(Ok(line)).await;
            });
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(ReceiverStream::new(rx)))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// One open watch.
struct Watch {
    rt: &'static ResourceType,
    request: WatchRequest,
    tx: mpsc::Sender<Result<String, Infallible>>,
    /// The newest resource version this watch has seen (of any type): bookmarks carry it.
    last_rv: u64,
}

impl Watch {
    async fn run(&mut self, initial: Vec<Arc<Change>>, mut receiver: broadcast::Receiver<Notice>) {
        for change in &initial {
            if !self.send_change(change).await {
                return;
            }
        }
        if self.request.send_initial_events {
            let bookmark = self.bookmark(true);
            if !self.send("BOOKMARK", &bookmark).await {
                return;
            }
        }
        let deadline = self.request.timeout.map(|t| Instant::now() + t);
        let mut bookmarks =
            tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
        bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                notice = receiver.recv() => match notice {
                    Ok(Notice::Change(change)) => {
                        self.last_rv = self.last_rv.max(change.rv);
                        if std::ptr::eq(change.resource, self.rt) && !self.send_change(&change).await {
                            return;
                        }
                    }
                    Ok(Notice::Expire { oldest }) => {
                        self.expire(oldest).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell too far behind: as the real server, give up with 410.
                        self.expire(self.last_rv + 1).await;
                        return;
                    }
                    Ok(Notice::Close) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmarks.tick() => {
                    // Sent even without allowWatchBookmarks (then as nothing): a closed client
                    // is noticed on the next send.
                    if self.request.bookmarks {
                        let bookmark = self.bookmark(false);
                        if !self.send("BOOKMARK", &bookmark).await {
                            return;
                        }
                    } else if self.tx.is_closed() {
                        return;
                    }
                }
                _ = sleep_until(deadline) => return,
            }
        }
    }

    /// Sends the event this watch sees for `change`, if any; false once the client is gone.
    async fn send_change(&mut self, change: &Change) -> bool {
        match view(change, &self.request.filter) {
            Some(event) => self.send(event, &change.object).await,
            None => true,
        }
    }

    async fn send(&self, event: &str, object: &Value) -> bool {
        self.tx.send(Ok(event_line(event, object))).await.is_ok()
    }

    fn bookmark(&self, initial_events_end: bool) -> Value {
        let mut metadata = json!({ "resourceVersion": self.last_rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(),
            "metadata": metadata,
        })
    }

    async fn expire(&self, oldest: u64) {
        let error = StatusError::expired(self.last_rv, oldest);
        let _ = self.send("ERROR", &error.to_json()).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The event type a watch with `filter` sees for `change`: a modification that moves an
/// object into the selection is an `ADDED`, out of it a `DELETED`.
fn view(change: &Change, filter: &Filter) -> Option<&'static str> {
    let now = filter.matches(&change.object);
    match change.kind {
        ChangeKind::Added => now.then_some("ADDED"),
        ChangeKind::Deleted => now.then_some("DELETED"),
        ChangeKind::Modified => {
            let before = change.prev.as_ref().is_none_or(|p| filter.matches(p));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}

fn event_line(event: &str, object: &Value) -> String {
    let mut line = json!({ "type": event, "object": object }).to_string();
    line.push('\n');
    line
}
