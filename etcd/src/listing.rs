//! Reading a whole prefix, however large, and watching it from there.
//!
//! One range request for a whole prefix fails once the answer passes the gRPC client's receive
//! limit (4 MiB by default: four 1.1 MB values, or some 15,000 announcements), and a daemon
//! that cannot list never starts. So a listing is read in pages:
//!
//! - every page is a range request with a key limit ([`Paging::keys`]), from the last key of the
//!   previous page plus `\0` to the end of the prefix;
//! - the first page's revision pins every later page (`revision = r`), so the listing is one
//!   consistent view and the caller watches from `r + 1` without missing or repeating a change;
//! - a page is bounded in bytes too: the client accepts answers up to [`Paging::max_message`]
//!   (raised deliberately from gRPC's 4 MiB to [`MAX_MESSAGE`]) and a page too large for it is
//!   asked for again with half as many keys, down to one key; the key limit grows back after
//!   each page that fits, so one large value does not slow down the rest of the listing.
//!
//! A single key and value is at most etcd's `--max-request-bytes` (1.5 MiB by default, 10 MiB
//! is etcd's recommended ceiling), so with [`MAX_MESSAGE`] every key can be read.

use etcd_client::{Client, GetOptions, WatchOptions};

use crate::KeyChange;

/// The largest answer the client accepts from etcd: above etcd's recommended ceiling for
/// `--max-request-bytes` (10 MiB), so that any one key fits in a page of its own.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Keys asked for in one page: ferrolb's values are a few hundred bytes, so a page of this
/// many is well under a megabyte, and 20,000 addresses take 20 round trips.
pub const PAGE_KEYS: i64 = 1000;

/// How a listing is cut into pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// Most keys asked for in one page (at least 1).
    pub keys: i64,
    /// Largest answer accepted from etcd, in bytes; a page over it is asked for again with fewer
    /// keys.
    pub max_message: usize,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            keys: PAGE_KEYS,
            max_message: MAX_MESSAGE,
        }
    }
}

/// The end of the range of keys starting with `prefix` (exclusive): the prefix with its last byte
/// below `0xff` incremented and what follows dropped; `\0` (the end of the key space) when there
/// is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|b| *b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// The first key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// Whether etcd's answer was refused for passing the client's receive limit. gRPC reports that
/// as `OUT_OF_RANGE`, which etcd also uses for a compacted revision; a compaction in the middle
/// of a listing therefore costs a few smaller retries before its error reaches the caller, who
/// lists again from the newest revision.
fn too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange)
}

/// Everything under `prefix`, and the revision it was read at (watch from the next one), in
/// pages of [`Paging::default`].
pub async fn list_prefix(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<(Vec<KeyChange>, i64)> {
    list_prefix_paged(client, prefix, Paging::default()).await
}

/// Everything under `prefix` at one revision, read in pages as `paging` says, and that revision.
pub async fn list_prefix_paged(
    client: &Client,
    prefix: &str,
    paging: Paging,
) -> anyhow::Result<(Vec<KeyChange>, i64)> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(paging.max_message);
    let full = paging.keys.max(1);
    let end = prefix_end(prefix.as_bytes());
    let mut start = prefix.as_bytes().to_vec();
    let mut limit = full;
    // 0 asks for the newest revision; the first page's answer pins it.
    let mut revision = 0;
    let mut out = Vec::new();
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit)
            .with_revision(revision);
        let resp = match kv.get(start.clone(), Some(options)).await {
            Ok(resp) => resp,
            Err(e) if limit > 1 && too_large(&e) => {
                limit /= 2;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if revision == 0 {
            revision = resp
                .header()
                .map(|h| h.revision())
                .filter(|r| *r > 0)
                .ok_or_else(|| anyhow::anyhow!("etcd answered a listing without a revision"))?;
        }
        out.extend(resp.kvs().iter().map(|kv| KeyChange {
            key: kv.key().to_vec(),
            value: Some((kv.value().to_vec(), kv.lease())),
            revision: kv.mod_revision(),
        }));
        match resp.kvs().last() {
            Some(last) if resp.more() => start = successor(last.key()),
            _ => return Ok((out, revision)),
        }
        limit = limit.saturating_mul(2).min(full);
    }
}

/// Watches everything under `prefix` from `revision` on. The client accepts messages up to
/// [`MAX_MESSAGE`] and asks etcd to split larger ones (a watch catching up sends many revisions'
/// events at once); each part is an ordinary answer carrying some of the events.
pub async fn watch_prefix(
    client: &mut Client,
    prefix: &str,
    revision: i64,
) -> anyhow::Result<etcd_client::WatchStream> {
    Ok(client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE)
        .watch(
            prefix,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision)
                    .with_fragment(),
            ),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_byte_incremented() {
        assert_eq!(prefix_end(b"/ferrolb/"), b"/ferrolb0".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn the_next_page_starts_just_after_the_last_key() {
        assert_eq!(successor(b"/p/a"), b"/p/a\0".to_vec());
        assert!(successor(b"/p/a").as_slice() > b"/p/a".as_slice());
        assert!(successor(b"/p/a").as_slice() < b"/p/a\0\0".as_slice());
    }
}
