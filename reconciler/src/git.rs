//! The pool configuration from a Git repository.
//!
//! The repository is kept as a bare clone in the cache directory and fetched with `git2`
//! (branches with `--prune` and `--force`, and tags), so a force-push is simply a new commit to
//! read. The configuration is read straight from the commit's tree under `--git-path`: there is no
//! working tree to reset or to leave half-written, and a blob's size is known before it is read,
//! so a huge file is refused without loading it, and so is a commit whose files together exceed
//! `MAX_REVISION_BYTES` (one blob named by many tree entries), before any of them is read. The
//! revision is the commit id.
//!
//! Credentials: an HTTPS token from `--git-token-file`, or an SSH key (`--git-ssh-key`) with the
//! server's host key checked against `--git-known-hosts` (no trust on first use: without a
//! known_hosts file, SSH is refused).

use std::path::{Path, PathBuf};

use ferrolb_core::config::{MAX_FILE_BYTES, MAX_REVISION_BYTES};
use ferrolb_core::load::SourceFile;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, FetchOptions, FetchPrune, ObjectType,
    RemoteCallbacks, Repository, TreeWalkMode, TreeWalkResult,
};

use crate::known_hosts::{KnownHosts, ssh_host};

/// Where and how to fetch.
#[derive(Clone, Debug)]
pub struct GitSource {
    /// The remote's URL.
    pub url: String,
    /// Branch, tag or commit.
    pub reference: String,
    /// Directory in the repository holding the configuration (`.`: the root).
    pub path: PathBuf,
    /// The bare clone.
    pub cache: PathBuf,
    /// HTTPS token.
    pub token: Option<String>,
    /// SSH private key.
    pub ssh_key: Option<PathBuf>,
    /// Known SSH host keys.
    pub known_hosts: Option<KnownHosts>,
}

/// What one fetch read.
#[derive(Debug)]
pub struct Fetched {
    /// The commit id.
    pub commit: String,
    /// The configuration files under the path (names relative to the repository's root), with
    /// oversized ones cut after `MAX_FILE_BYTES + 1` bytes so that validation refuses them.
    pub files: Vec<SourceFile>,
    /// `--git-path` is not in the commit (read as an empty configuration).
    pub path_missing: bool,
}

/// Why a fetch failed; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 failed (network, authentication, host key, corrupt repository).
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The reference is neither a branch, a tag nor a commit of the remote.
    #[error("git: {0:?} is not a branch, tag or commit of the remote")]
    UnknownRef(String),
    /// The fetch did not finish in time.
    #[error("git: the fetch did not finish within {0:?}")]
    Timeout(std::time::Duration),
    /// The commit's configuration files together (names and sizes, each counted up to the
    /// per-file bound) exceed the bound for one revision; nothing of it was read.
    #[error(
        "git: commit {commit}: the configuration files together exceed {} MiB (names and contents); refusing the commit",
        .limit >> 20
    )]
    TooLarge {
        /// The commit id.
        commit: String,
        /// The bound, in bytes.
        limit: usize,
    },
    /// The cache directory cannot be used.
    #[error("git cache {0}: {1}")]
    Cache(PathBuf, std::io::Error),
}

impl GitSource {
    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        // A token travels only over HTTPS: over plain HTTP anyone on the path could read it.
        let token = self
            .token
            .clone()
            .filter(|_| self.url.starts_with("https://"));
        let key = self.ssh_key.clone();
        cb.credentials(move |_url, user, allowed| {
            if allowed.is_ssh_key() {
                if let Some(k) = &key {
                    return Cred::ssh_key(user.unwrap_or("git"), None, k, None);
                }
            }
            if allowed.is_user_pass_plaintext() {
                if let Some(t) = &token {
                    return Cred::userpass_plaintext("x-access-token", t);
                }
            }
            Err(git2::Error::from_str(
                "no credentials for this remote (--git-token-file or --git-ssh-key)",
            ))
        });
        let known = self.known_hosts.clone();
        let target = ssh_host(&self.url);
        cb.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: let libgit2 verify the certificate chain against the system's CAs.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let (Some(known), Some(blob)) = (&known, hostkey.hostkey()) else {
                return Err(git2::Error::from_str(
                    "refusing SSH: no --git-known-hosts to check the server's host key against",
                ));
            };
            let port = target.as_ref().map_or(22, |(_, p)| *p);
            if known.accepts(host, port, blob) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                Err(git2::Error::from_str(&format!(
                    "refusing SSH: the host key of {host} is not in --git-known-hosts"
                )))
            }
        });
        cb
    }

    fn open(&self) -> Result<Repository, GitError> {
        match Repository::open_bare(&self.cache) {
            Ok(r) => Ok(r),
            Err(_) => {
                std::fs::create_dir_all(&self.cache)
                    .map_err(|e| GitError::Cache(self.cache.clone(), e))?;
                Ok(Repository::init_bare(&self.cache)?)
            }
        }
    }

    /// Fetches and reads the configuration files of the reference's commit.
    pub fn fetch(&self) -> Result<Fetched, GitError> {
        let repo = self.open()?;
        let mut remote = repo.remote_anonymous(&self.url)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks())
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::All);
        remote.fetch(
            &[
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(&mut opts),
            None,
        )?;
        let r = &self.reference;
        let object = [format!("refs/remotes/origin/{r}"), format!("refs/tags/{r}")]
            .iter()
            .find_map(|name| repo.revparse_single(name).ok())
            .or_else(|| repo.revparse_single(r).ok())
            .ok_or_else(|| GitError::UnknownRef(r.clone()))?;
        let commit = object
            .peel_to_commit()
            .map_err(|_| GitError::UnknownRef(r.clone()))?;
        let id = commit.id().to_string();
        let root = commit.tree()?;
        let prefix = normalized(&self.path);
        // A path that is not in the commit is an empty configuration: deleting every pool file
        // deletes the directory too, since Git does not keep empty directories, and deleting
        // every pool is a valid change.
        let tree = if prefix.is_empty() {
            Some(root)
        } else {
            root.get_path(Path::new(&prefix))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .and_then(|e| e.to_object(&repo).ok())
                .and_then(|o| o.into_tree().ok())
        };
        let Some(tree) = tree else {
            return Ok(Fetched {
                commit: id,
                files: Vec::new(),
                path_missing: true,
            });
        };
        let found = yaml_files(&tree, &prefix)?;
        let files = read_bounded(&repo, &id, found)?;
        Ok(Fetched {
            commit: id,
            files,
            path_missing: false,
        })
    }
}

/// The YAML files under `tree` (which is at `prefix` in the commit), by path, skipping dot
/// files and directories.
fn yaml_files(tree: &git2::Tree<'_>, prefix: &str) -> Result<Vec<(String, git2::Oid)>, GitError> {
    let mut found: Vec<(String, git2::Oid)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        if name.starts_with('.') {
            return TreeWalkResult::Skip;
        }
        if entry.kind() == Some(ObjectType::Blob)
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
        {
            let full = if prefix.is_empty() {
                format!("{dir}{name}")
            } else {
                format!("{prefix}/{dir}{name}")
            };
            found.push((full, entry.id()));
        }
        TreeWalkResult::Ok
    })?;
    found.sort();
    Ok(found)
}

/// Reads the blobs of `found`. Sizes first, from the object headers: the whole commit is
/// refused before any blob is read when its files would exceed the bound together; a file
/// over the per-file bound is not read at all.
fn read_bounded(
    repo: &Repository,
    commit: &str,
    found: Vec<(String, git2::Oid)>,
) -> Result<Vec<SourceFile>, GitError> {
    let odb = repo.odb()?;
    let mut sized = Vec::with_capacity(found.len());
    let mut total = 0usize;
    for (name, oid) in found {
        let (size, _) = odb.read_header(oid)?;
        total = total
            .saturating_add(name.len())
            .saturating_add(size.min(MAX_FILE_BYTES + 1));
        if total > MAX_REVISION_BYTES {
            return Err(GitError::TooLarge {
                commit: commit.to_string(),
                limit: MAX_REVISION_BYTES,
            });
        }
        sized.push((name, oid, size));
    }
    let mut files = Vec::with_capacity(sized.len());
    for (name, oid, size) in sized {
        let bytes = if size > MAX_FILE_BYTES {
            // Enough for validation to report it as oversized, without reading it all.
            vec![b'#'; MAX_FILE_BYTES + 1]
        } else {
            repo.find_blob(oid)?.content().to_vec()
        };
        files.push(SourceFile { name, bytes });
    }
    Ok(files)
}

/// `--git-path` without `./` and trailing slashes; empty for the root.
fn normalized(path: &Path) -> String {
    let s = path.to_string_lossy();
    let s = s.trim_start_matches("./").trim_matches('/');
    if s == "." {
        String::new()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose tree names one blob of `blob_bytes` under `entries` names, and the
    /// source that fetches it.
    fn repeated_blob(dir: &Path, entries: usize, blob_bytes: usize) -> GitSource {
        let origin = dir.join("origin");
        let repo = Repository::init(&origin).expect("init");
        let blob = repo.blob(&vec![b'#'; blob_bytes]).expect("blob");
        let mut tree = repo.treebuilder(None).expect("treebuilder");
        for i in 0..entries {
            tree.insert(format!("pool-{i}.yaml"), blob, 0o100644)
                .expect("insert");
        }
        let tree = repo.find_tree(tree.write().expect("tree")).expect("find");
        let sig = git2::Signature::now("t", "t@example.invalid").expect("sig");
        repo.commit(Some("refs/heads/main"), &sig, &sig, "pools", &tree, &[])
            .expect("commit");
        GitSource {
            url: origin.to_string_lossy().into_owned(),
            reference: "main".into(),
            path: PathBuf::from("."),
            cache: dir.join("cache"),
            token: None,
            ssh_key: None,
            known_hosts: None,
        }
    }

    #[test]
    fn one_blob_under_many_names_is_refused_as_a_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 400 names for one 1 MiB blob: 400 MiB if read, from a repository of about 1 MiB.
        let source = repeated_blob(dir.path(), 400, 1 << 20);
        match source.fetch() {
            Err(GitError::TooLarge { limit, .. }) => assert_eq!(limit, MAX_REVISION_BYTES),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn oversized_placeholders_count_toward_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each name stands for a blob over the per-file bound: each counts as that bound.
        let source = repeated_blob(dir.path(), 5, MAX_FILE_BYTES + 10);
        assert!(matches!(source.fetch(), Err(GitError::TooLarge { .. })));
    }

    #[test]
    fn a_commit_within_the_bound_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = repeated_blob(dir.path(), 3, 1 << 20);
        let fetched = source.fetch().expect("within the bound");
        assert_eq!(fetched.files.len(), 3);
        assert!(fetched.files.iter().all(|f| f.bytes.len() == 1 << 20));
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalized(Path::new(".")), "");
        assert_eq!(normalized(Path::new("./pools/")), "pools");
        assert_eq!(normalized(Path::new("clusters/a")), "clusters/a");
    }
}
