//! Reading configuration and manifest files from disk: the only module of `ferrolb-core` that
//! touches the file system, and only to read. Parsing happens on the bytes elsewhere, so every
//! reader can be tested without files.
//!
//! A path may be a file or a directory; directories are read recursively, in name order, taking
//! `*.yaml` and `*.yml`. Entries whose names start with `.` are skipped: that leaves out `.git`
//! and, in a mounted Kubernetes ConfigMap, the `..data` and `..2024_...` copies behind the
//! visible symlinks, which would otherwise be read twice. Symbolic links are followed, with a
//! depth limit and a set of visited directories so that loops end. What one read takes in
//! all (names and bytes of every file) is bounded by `MAX_REVISION_BYTES`: past it the read
//! fails as a whole, since a configuration read in part would be a different configuration.
//!
//! Only regular files are opened (a symlink to one is fine): a FIFO, socket or device given as
//! a path, or named `*.yaml` in a directory, is an error found from its metadata, before any
//! blocking open or read. A name that is not UTF-8 is an error too rather than a silent skip: it
//! could not be named exactly in messages, and a file left out would go unnoticed.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::config::{MAX_FILE_BYTES, MAX_REVISION_BYTES};

/// Deepest directory nesting read below a given path.
const MAX_DEPTH: usize = 32;

/// A file's name (as the user would write it) and its bytes, at most `MAX_FILE_BYTES + 1` of them
/// so that an oversized file is noticed without being read whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The path, built from the path the user gave.
    pub name: String,
    /// The content (truncated after `MAX_FILE_BYTES + 1` bytes).
    pub bytes: Vec<u8>,
}

/// A path that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct LoadError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The files read so far, and what they take (names and bytes).
#[derive(Default)]
struct Collected {
    files: Vec<SourceFile>,
    bytes: usize,
    limit: usize,
}

impl Collected {
    /// Adds a file; fails once the files together exceed the limit.
    fn push(&mut self, f: SourceFile) -> Result<(), LoadError> {
        self.bytes = self
            .bytes
            .saturating_add(f.name.len())
            .saturating_add(f.bytes.len());
        if self.bytes > self.limit {
            return Err(LoadError {
                path: PathBuf::from(&f.name),
                source: io::Error::new(io::ErrorKind::FileTooLarge, TotalTooLarge(self.limit)),
            });
        }
        self.files.push(f);
        Ok(())
    }
}

/// The files of one read together exceed the bound (the `source` of a [`LoadError`] of kind
/// [`io::ErrorKind::FileTooLarge`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the files together exceed {} MiB (names and contents); nothing of this read is used",
    .0 >> 20
)]
pub struct TotalTooLarge(pub usize);

/// Reads every YAML file under `paths`, at most `MAX_REVISION_BYTES` in all.
pub fn read_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<SourceFile>, LoadError> {
    read_paths_within(paths, MAX_REVISION_BYTES)
}

/// Reads every YAML file under `paths`, at most `limit` bytes of names and contents in all.
pub fn read_paths_within<P: AsRef<Path>>(
    paths: &[P],
    limit: usize,
) -> Result<Vec<SourceFile>, LoadError> {
    let mut out = Collected {
        limit,
        ..Collected::default()
    };
    let mut visited = HashSet::new();
    for p in paths {
        let path = p.as_ref();
        let meta = fs::metadata(path).map_err(|source| LoadError {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            read_dir(path, 0, &mut visited, &mut out)?;
        } else {
            out.push(read_file(path, &meta)?)?;
        }
    }
    Ok(out.files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn read_dir(
    dir: &Path,
    depth: usize,
    visited: &mut HashSet<PathBuf>,
    out: &mut Collected,
) -> Result<(), LoadError> {
    let err = |source| LoadError {
        path: dir.to_path_buf(),
        source,
    };
    let canonical = fs::canonicalize(dir).map_err(err)?;
    if depth > MAX_DEPTH || !visited.insert(canonical) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort();
    for path in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // A dangling symlink or a file removed meanwhile is not an error: skip it.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        let wanted = meta.is_dir() || is_yaml(&path);
        if wanted && name.to_str().is_none() {
            return Err(LoadError {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, "the name is not UTF-8"),
            });
        }
        if meta.is_dir() {
            read_dir(&path, depth + 1, visited, out)?;
        } else if is_yaml(&path) {
            match read_file(&path, &meta) {
                Ok(f) => out.push(f)?,
                Err(e) if e.source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Refuses anything but a regular file, from metadata alone: opening a FIFO for reading blocks
/// until a writer comes, and a device may never end.
fn check_regular(path: &Path, meta: &fs::Metadata) -> Result<(), LoadError> {
    if meta.is_file() {
        return Ok(());
    }
    Err(LoadError {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", file_kind(meta.file_type())),
        ),
    })
}

#[cfg(unix)]
fn file_kind(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(not(unix))]
fn file_kind(_: fs::FileType) -> &'static str {
    "not a file"
}

fn read_file(path: &Path, meta: &fs::Metadata) -> Result<SourceFile, LoadError> {
    check_regular(path, meta)?;
    let err = |source| LoadError {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(err)?;
    // The path may have been replaced since its metadata was read: check what was opened.
    check_regular(path, &file.metadata().map_err(err)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(SourceFile {
        name: path.display().to_string(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[SourceFile]) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                Path::new(&f.name)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn reads_yaml_recursively_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("b.yaml"), "b").expect("write");
        fs::write(dir.path().join("a.yml"), "a").expect("write");
        fs::write(dir.path().join("notes.txt"), "x").expect("write");
        fs::write(dir.path().join("sub/c.yaml"), "c").expect("write");
        let files = read_paths(&[dir.path()]).expect("read");
        assert_eq!(names(&files), ["a.yml", "b.yaml", "c.yaml"]);
    }

    #[test]
    fn configmap_mount_is_read_once() {
        // The layout kubelet writes: ..<timestamp>/ holds the files, ..data points at it, and
        // each visible name is a symlink through ..data.
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir(d.join("..2026_11_29_01_00_00.1")).expect("mkdir");
        fs::write(d.join("..2026_11_29_01_00_00.1/pools.yaml"), "p").expect("write");
        std::os::unix::fs::symlink("..2026_11_29_01_00_00.1", d.join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/pools.yaml", d.join("pools.yaml")).expect("link");
        let files = read_paths(&[d]).expect("read");
        assert_eq!(names(&files), ["pools.yaml"]);
        assert_eq!(files[0].bytes, b"p");
    }

    #[test]
    fn symlink_loops_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("a")).expect("mkdir");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).expect("link");
        fs::write(dir.path().join("a/x.yaml"), "x").expect("write");
        let files = read_paths(&[dir.path()]).expect("read");
        assert_eq!(names(&files), ["x.yaml"]);
    }

    fn fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", path.display());
    }

    #[test]
    fn a_fifo_given_as_the_path_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pools.yaml");
        fifo(&path);
        // Opening the FIFO would block until a writer comes: the metadata check must come first.
        // The read runs on a thread so that a regression fails here instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(read_paths(&[&p])));
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("read_paths blocked on the FIFO")
            .expect_err("a FIFO");
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: not a regular file (a FIFO)",
                path.display()
            )
        );
    }

    #[test]
    fn a_fifo_named_yaml_in_a_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.yaml"), "a").expect("write");
        fifo(&dir.path().join("b.yaml"));
        // Not YAML by name: left alone, as notes.txt would be.
        fifo(&dir.path().join("c.txt"));
        let err = read_paths(&[dir.path()]).expect_err("a FIFO");
        assert_eq!(err.path, dir.path().join("b.yaml"));
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("real.yaml"), "r").expect("write");
        std::os::unix::fs::symlink("real.yaml", dir.path().join("link.yaml")).expect("link");
        let files = read_paths(&[dir.path().join("link.yaml")]).expect("read");
        assert_eq!(files[0].bytes, b"r");
    }

    #[test]
    fn a_yaml_file_whose_name_is_not_utf8_is_an_error_naming_it_lossily() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.yaml"), "a").expect("write");
        let name = OsStr::from_bytes(b"p\xffols.yaml");
        fs::write(dir.path().join(name), "p").expect("write");
        // Other non-UTF-8 names are not read anyway, and stay ignored.
        fs::write(dir.path().join(OsStr::from_bytes(b"n\xfftes.txt")), "n").expect("write");
        let err = read_paths(&[dir.path()]).expect_err("non-UTF-8 name");
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}/p\u{fffd}ols.yaml: the name is not UTF-8",
                dir.path().display()
            )
        );
    }

    #[test]
    fn missing_path_is_an_error() {
        let err = read_paths(&["/nonexistent/ferrolb/pools"]).expect_err("missing");
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn one_file_behind_many_links_is_bounded_in_total() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("a.yaml"), vec![b'#'; 1000]).expect("write");
        for i in 0..9 {
            std::os::unix::fs::symlink("a.yaml", d.join(format!("l{i}.yaml"))).expect("link");
        }
        let err = read_paths_within(&[d], 8 * 1000).expect_err("ten copies exceed eight");
        assert_eq!(err.source.kind(), io::ErrorKind::FileTooLarge);
        assert!(
            err.source
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<TotalTooLarge>().is_some()),
            "{err}"
        );
        let files = read_paths_within(&[d], 11 * 1100).expect("within the bound");
        assert_eq!(files.len(), 10);
    }

    #[test]
    fn the_default_bound_counts_every_file_of_a_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("a.yaml"), vec![b'#'; MAX_FILE_BYTES]).expect("write");
        let copies = MAX_REVISION_BYTES / MAX_FILE_BYTES;
        for i in 0..copies {
            std::os::unix::fs::symlink("a.yaml", d.join(format!("l{i}.yaml"))).expect("link");
        }
        let err = read_paths(&[d]).expect_err("over the bound");
        assert!(err.to_string().contains("exceed 16 MiB"), "{err}");
    }

    #[test]
    fn oversized_file_is_read_only_past_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        fs::write(&path, vec![b'#'; MAX_FILE_BYTES + 4096]).expect("write");
        let files = read_paths(&[&path]).expect("read");
        assert_eq!(files[0].bytes.len(), MAX_FILE_BYTES + 1);
    }
}
