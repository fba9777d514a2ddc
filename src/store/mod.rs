//! The file store: the server's root directory, and the only code that turns
//! client-supplied names into files.
//!
//! The store holds the root directory open, and every name a board or a
//! client sends is resolved from that handle, one component at a time
//! relative to directory handles, never by path (the rules are documented in
//! `path.rs`, the system calls are in `at.rs`). Reads get a [`FileSource`]
//! whose type was checked on the opened handle; uploads get an
//! [`UploadSink`] that writes into the directory handle the resolution
//! reached and only makes the file visible on commit (`upload.rs`). The
//! operator stages files through the management calls ([`Store::put_file`]
//! and friends, `manage.rs`), which share the same confinement and atomicity
//! but not the TFTP write policy.
//!
//! Choices where the TFTP servers in the wild differ:
//! - `a/../b` is accepted as `b` (tftpd-hpa refuses any `..`); only a `..`
//!   that would climb above the root is refused, with ERROR 2.
//! - Symlinks inside the root are followed, relative ones and absolute ones
//!   that point into the root's canonical path (labs link
//!   `/srv/tftp/<serial> -> /srv/tftp/boot`); a link leading outside is
//!   ERROR 2 whether or not its target exists.
//! - Names over [`MAX_NAME_BYTES`] or [`MAX_NAME_COMPONENTS`] get ERROR 1.
//! - Uploads into a missing directory get ERROR 1 unless `create_dirs` is on,
//!   so a typo in a board's upload path does not silently grow the tree; an
//!   upload that does not complete removes the directories it made.
//! - Uploads to a directory, a dangling symlink or a non-regular file get
//!   ERROR 2; reads of them (FIFOs and devices too) get ERROR 1.
//!
//! Unix only: the confinement is built on `openat` and friends.

mod at;
mod error;
mod manage;
mod path;
mod upload;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

pub use error::{DenyReason, StoreError};
pub use manage::{Entry, PutOutcome};
pub use path::{Intent, MAX_LINKS, MAX_NAME_BYTES, MAX_NAME_COMPONENTS, MAX_STEPS};
pub use upload::UploadSink;

use crate::data::FileSource;
use at::DirFd;
use upload::Commit;

/// What TFTP write requests may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePolicy {
    /// Every write request gets ERROR 2. The default: a netboot server that
    /// accepts uploads is a way to replace what boards boot.
    #[default]
    Off,
    /// New files only; an existing name gets ERROR 6, also when it appears
    /// while the upload runs.
    Create,
    /// New files, and atomic replacement of existing ones.
    Overwrite,
}

impl fmt::Display for WritePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WritePolicy::Off => "off",
            WritePolicy::Create => "create",
            WritePolicy::Overwrite => "overwrite",
        })
    }
}

/// A write policy string that is none of `off`, `create`, `overwrite`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown write policy {0:?} (expected off, create or overwrite)")]
pub struct ParseWritePolicyError(pub String);

impl FromStr for WritePolicy {
    type Err = ParseWritePolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            WritePolicy::Off,
            WritePolicy::Create,
            WritePolicy::Overwrite,
        ]
        .into_iter()
        .find(|p| p.to_string().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| ParseWritePolicyError(s.to_owned()))
    }
}

/// How the store behaves. Build with [`StoreConfig::new`] and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub root: PathBuf,
    pub write: WritePolicy,
    /// Largest TFTP upload in bytes; larger ones fail with ERROR 3.
    pub max_upload: Option<u64>,
    /// Treat `\` as a separator, for clients that send Windows paths.
    pub backslash_to_slash: bool,
    /// Let TFTP uploads create missing directories inside the root.
    pub create_dirs: bool,
    /// Make [`Store::close`] remove the files that puts created.
    pub remove_created_on_close: bool,
}

impl StoreConfig {
    /// Read-only, no size limit, no conversions, nothing removed on close.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            root: root.into(),
            write: WritePolicy::Off,
            max_upload: None,
            backslash_to_slash: false,
            create_dirs: false,
            remove_created_on_close: false,
        }
    }
    pub fn write(mut self, policy: WritePolicy) -> Self {
        self.write = policy;
        self
    }
    pub fn max_upload(mut self, limit: Option<u64>) -> Self {
        self.max_upload = limit;
        self
    }
    pub fn backslash_to_slash(mut self, on: bool) -> Self {
        self.backslash_to_slash = on;
        self
    }
    pub fn create_dirs(mut self, on: bool) -> Self {
        self.create_dirs = on;
        self
    }
    pub fn remove_created_on_close(mut self, on: bool) -> Self {
        self.remove_created_on_close = on;
        self
    }
}

/// The root directory and its rules. Shared by all transfers (`Send + Sync`);
/// the only lock guards the set of files to remove on close.
///
/// ```
/// use tftplab::store::{Store, StoreConfig, WritePolicy};
///
/// let root = tempfile::tempdir()?;
/// let store = Store::new(StoreConfig::new(root.path()).write(WritePolicy::Create))?;
/// store.put_bytes("9ffefdef/start4.elf", b"firmware")?;
/// assert!(store.exists("9ffefdef/start4.elf"));
/// assert!(store.list()?.iter().any(|e| e.name == "9ffefdef/start4.elf" && e.size == 8));
/// // Names that leave the root are refused, whatever the write policy.
/// assert!(store.open_read("../etc/passwd").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Store {
    /// Canonical, so absolute symlink targets can be compared against it.
    root: PathBuf,
    /// The root, held open: every name is resolved from here.
    root_fd: DirFd,
    config: StoreConfig,
    created: Mutex<manage::Created>,
    stale_removed: usize,
}

impl Store {
    /// Opens the root and removes temporary files that dead uploads left in
    /// it (see [`Store::stale_removed`]). Fails if the root does not exist
    /// or is not a directory; the error names the path, as it goes to the
    /// operator.
    pub fn new(mut config: StoreConfig) -> io::Result<Store> {
        let context = |e: io::Error| {
            let msg = format!("TFTP root {}: {e}", config.root.display());
            io::Error::new(e.kind(), msg)
        };
        let root = fs::canonicalize(&config.root).map_err(context)?;
        if !fs::metadata(&root).map_err(context)?.is_dir() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a directory");
            return Err(context(e));
        }
        let root_fd = at::open_dir_path(&root).map_err(context)?;
        let stale = upload::sweep_stale(&root_fd);
        if !stale.is_empty() {
            tracing::info!(
                root = %root.display(),
                count = stale.len(),
                "removed temporary files of uploads whose process is gone"
            );
        }
        config.root = root.clone();
        Ok(Store {
            root,
            root_fd,
            config,
            created: Mutex::default(),
            stale_removed: stale.len(),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// How many temporary files of dead uploads [`Store::new`] removed: those
    /// named `.<name>.tftplab-<pid>-<n>.part`, regular, owned by this
    /// process's effective uid, whose pid is no live process. Each one is
    /// also logged at `info` with its root-relative name.
    pub fn stale_removed(&self) -> usize {
        self.stale_removed
    }

    /// Opens a file for a read request. The file is opened without following
    /// a symlink and without blocking, and its type is checked on the opened
    /// handle: a directory, FIFO, socket or device is ERROR 1.
    pub fn open_read(&self, name: &str) -> Result<FileSource, StoreError> {
        let (file, _) = self.open_file(name)?;
        FileSource::new(file).map_err(|e| StoreError::from_io(name, e))
    }

    /// Starts an upload for a write request, applying the write policy, the
    /// size limit and `create_dirs`. With [`WritePolicy::Create`] an existing
    /// name is refused now, and one that appears before the commit makes
    /// [`crate::data::Sink::commit`] fail with `AlreadyExists`.
    pub fn open_write(&self, name: &str) -> Result<UploadSink, StoreError> {
        let commit = match self.config.write {
            WritePolicy::Off => return Err(StoreError::denied(name, DenyReason::WritesDisabled)),
            WritePolicy::Create => Commit::NoClobber,
            WritePolicy::Overwrite => Commit::Replace,
        };
        let target = self.resolve_write(name, self.config.create_dirs)?;
        if target.existed && commit == Commit::NoClobber {
            return Err(StoreError::Exists {
                name: name.to_owned(),
            });
        }
        self.sink(name, target, commit, self.config.max_upload)
    }

    /// An upload into a resolved target, making its missing directories.
    fn sink(
        &self,
        name: &str,
        target: path::WriteTarget,
        commit: Commit,
        limit: Option<u64>,
    ) -> Result<UploadSink, StoreError> {
        let path::WriteTarget {
            dir,
            dir_path,
            new_dirs,
            file,
            ..
        } = target;
        UploadSink::create(dir, dir_path, &new_dirs, file, commit, limit)
            .map_err(|e| StoreError::from_io(name, e))
    }
}
