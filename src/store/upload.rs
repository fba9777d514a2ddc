//! The upload sink: bytes go to a hidden temporary file beside the target and
//! appear under the real name only when the transfer completes.
//!
//! Writing in place would let a board fetch a half-uploaded kernel, and would
//! destroy the old file when an upload dies halfway. The temporary file sits in
//! the target's own directory because `rename` and `link` are only atomic
//! within one file system. That directory is held open from the moment the
//! name is resolved: the temporary file is created, renamed and removed with
//! `*at` calls on that handle, so an upload cannot be redirected out of the
//! root by swapping a directory on its path for a symlink meanwhile.
//!
//! A process that dies mid-upload leaves its temporary file; [`sweep_stale`]
//! removes those of dead processes when a store opens.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::at::{self, DirFd, Node};
use crate::data::{write_all_at, Sink};

const TAG: &str = ".tftplab-";
const EXT: &str = ".part";
/// Keeps `.<name>.tftplab-<pid>-<n>.part` under the usual 255-byte name limit.
const MAX_STEM: usize = 160;
/// How deep [`sweep_stale`] looks below the root.
const SWEEP_DEPTH: usize = super::MAX_NAME_COMPONENTS;
/// How many directory entries [`sweep_stale`] looks at, at most.
const SWEEP_ENTRIES: usize = 100_000;

/// Distinguishes uploads within this process; the pid distinguishes processes.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How the finished file replaces whatever has the name by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// `rename`: the last upload to finish wins.
    Replace,
    /// `link` then `unlink`: fails with `AlreadyExists` if the name appeared
    /// while the upload ran, so the first upload to finish wins.
    NoClobber,
}

/// The pid in a name of the form [`temp_name`] produces, as digits.
fn temp_pid(c: &str) -> Option<&str> {
    let body = c.strip_prefix('.')?.strip_suffix(EXT)?;
    let at = body.rfind(TAG)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = body[at + TAG.len()..].split('-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(pid), Some(n), None) if digits(pid) && digits(n) => Some(pid),
        _ => None,
    }
}

/// True for names of the form [`temp_name`] produces, so listings can hide
/// them and clients cannot ask for them.
pub(crate) fn is_temp_name(c: &str) -> bool {
    temp_pid(c).is_some()
}

fn temp_name(file_name: &OsStr) -> OsString {
    let file_name = file_name.to_string_lossy();
    let mut end = file_name.len().min(MAX_STEM);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{}{TAG}{}-{n}{EXT}", &file_name[..end], std::process::id()).into()
}

/// A directory an upload made, so an upload that does not commit can take
/// it away again.
#[derive(Debug)]
struct MadeDir {
    parent: DirFd,
    name: OsString,
    path: PathBuf,
}

/// A [`Sink`] that writes an upload to `.<name>.tftplab-<pid>-<n>.part` in
/// the target's directory and renames (or, with the `create` policy, links)
/// it into place on commit, after an fsync (the store's uploads always; a
/// client's download only when asked, see [`UploadSink::synced`]). Readers
/// see the old file or the whole new one, never a mix; concurrent uploads
/// of one name never interleave.
///
/// Dropping it without a successful [`Sink::commit`] deletes the temporary
/// file, and the directories it created for the upload if they are still
/// empty, so a transfer task that dies or is cancelled leaves nothing behind.
#[derive(Debug)]
pub struct UploadSink {
    file: Option<File>,
    /// The directory the file goes into, held open.
    dir: DirFd,
    temp: OsString,
    name: OsString,
    target: PathBuf,
    /// Parents first.
    made: Vec<MadeDir>,
    commit: Commit,
    limit: Option<u64>,
    /// fsync the file (and its directory) around the rename.
    durable: bool,
    finished: bool,
}

impl UploadSink {
    /// An atomic writer for any local path (the client's downloads use it):
    /// the file appears under `target`, replacing what was there, only on
    /// commit. Not synced unless [`UploadSink::synced`] says so, like the
    /// downloads of other TFTP clients: an fsync of a 64 MiB file took
    /// longer (0.1 s) than fetching it over loopback.
    pub fn replacing(target: PathBuf) -> io::Result<Self> {
        let name = target
            .file_name()
            .ok_or(io::ErrorKind::InvalidInput)?
            .to_owned();
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = at::open_dir_path(parent)?;
        let dir_path = target.parent().unwrap_or(Path::new("")).to_path_buf();
        Ok(Self::create(dir, dir_path, &[], name, Commit::Replace, None)?.synced(false))
    }

    /// Whether commit makes the file durable (fsync of the file before the
    /// rename and of its directory after).
    pub fn synced(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Makes `new_dirs` below `dir` (each with `mkdirat` in the one before,
    /// remembering those it made), then the temporary file for `name` in the
    /// last of them.
    pub(crate) fn create(
        dir: DirFd,
        dir_path: PathBuf,
        new_dirs: &[OsString],
        name: OsString,
        commit: Commit,
        limit: Option<u64>,
    ) -> io::Result<Self> {
        let mut made = Vec::new();
        let mut dir = dir;
        let mut path = dir_path;
        let opened = (|| {
            for d in new_dirs {
                path.push(d);
                if at::make_dir(dir.as_fd(), d)? {
                    made.push(MadeDir {
                        parent: dir.clone(),
                        name: d.clone(),
                        path: path.clone(),
                    });
                }
                // Made by us or by a concurrent upload; a link or a file
                // there is refused.
                dir = Arc::new(at::open_subdir(dir.as_fd(), d)?);
            }
            // A stale file from an earlier process with the same pid can
            // collide.
            let mut attempts = 0;
            loop {
                let temp = temp_name(&name);
                match at::create_new(dir.as_fd(), &temp) {
                    Ok(file) => return Ok((file, temp)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                        attempts += 1
                    }
                    Err(e) => return Err(e),
                }
            }
        })();
        let (file, temp) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                remove_made(&made);
                return Err(e);
            }
        };
        Ok(UploadSink {
            file: Some(file),
            dir,
            temp,
            target: path.join(&name),
            name,
            made,
            commit,
            limit,
            durable: true,
            finished: false,
        })
    }

    /// Where the file will appear on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The directories this upload created, parents first.
    pub(crate) fn made_dirs(&self) -> Vec<PathBuf> {
        self.made.iter().map(|d| d.path.clone()).collect()
    }

    /// Moves the synced temporary file into place.
    fn publish(&self) -> io::Result<()> {
        let dir = self.dir.as_fd();
        match self.commit {
            Commit::Replace => at::rename(dir, &self.temp, &self.name)?,
            Commit::NoClobber => match at::link(dir, &self.temp, &self.name) {
                Ok(()) => {
                    let _ = at::unlink(dir, &self.temp);
                }
                // No hard links on this file system: fall back to a checked
                // rename, which leaves a small window for a racing creator.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    if at::exists(dir, &self.name) {
                        return Err(io::ErrorKind::AlreadyExists.into());
                    }
                    at::rename(dir, &self.temp, &self.name)?
                }
                Err(e) => return Err(e),
            },
        }
        if self.durable {
            // Best effort: some file systems refuse to sync a directory, and
            // the data is already safe.
            let _ = at::sync_dir(dir);
        }
        Ok(())
    }

    fn discard(&mut self) {
        self.file = None;
        if !self.finished {
            self.finished = true;
            let _ = at::unlink(self.dir.as_fd(), &self.temp);
            remove_made(&std::mem::take(&mut self.made));
        }
    }
}

/// Removes directories an upload made, deepest first, where still empty.
fn remove_made(made: &[MadeDir]) {
    for d in made.iter().rev() {
        let _ = at::remove_dir(d.parent.as_fd(), &d.name);
    }
}

/// `FileTooLarge` is what [`ErrorCode::for_io_error`] maps to ERROR 3.
///
/// [`ErrorCode::for_io_error`]: crate::wire::ErrorCode::for_io_error
fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("upload exceeds the limit of {limit} bytes"),
    )
}

fn finished() -> io::Error {
    io::Error::other("upload already committed or aborted")
}

impl Sink for UploadSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if let Some(limit) = self.limit {
            match offset.checked_add(data.len() as u64) {
                Some(end) if end <= limit => {}
                _ => return Err(too_large(limit)),
            }
        }
        let file = self.file.as_ref().ok_or_else(finished)?;
        write_all_at(file, data, offset)
    }

    fn commit(&mut self) -> io::Result<()> {
        let file = self.file.take().ok_or_else(finished)?;
        let synced = if self.durable {
            file.sync_all()
        } else {
            Ok(())
        };
        drop(file);
        let result = synced.and_then(|()| self.publish());
        if result.is_err() {
            self.discard();
        }
        self.finished = true;
        result
    }

    fn abort(&mut self) {
        self.discard();
    }
}

impl Drop for UploadSink {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Removes the temporary files of uploads whose process is gone, anywhere
/// below `root` (not through symlinks, at most [`SWEEP_DEPTH`] directories
/// down, at most [`SWEEP_ENTRIES`] entries looked at, so a root pointed at a
/// huge tree does not stall startup). A file is removed only when all of
/// this holds: its name is exactly one [`temp_name`] makes, it is a regular
/// file owned by our effective uid, and no process has the pid in its name
/// (`kill(pid, 0)` says `ESRCH`). Best effort: what cannot be read is left
/// alone. Returns the root-relative names removed.
pub(crate) fn sweep_stale(root: &DirFd) -> Vec<String> {
    let mut sweep = Sweep {
        uid: at::effective_uid(),
        budget: SWEEP_ENTRIES,
        removed: Vec::new(),
    };
    sweep.dir(root, "", 0);
    sweep.removed
}

struct Sweep {
    uid: u32,
    /// Entries still to look at.
    budget: usize,
    removed: Vec<String>,
}

impl Sweep {
    fn dir(&mut self, dir: &DirFd, prefix: &str, depth: usize) {
        let Ok(names) = at::read_dir(dir.as_fd()) else {
            return;
        };
        for name in names {
            if self.budget == 0 {
                return;
            }
            self.budget -= 1;
            let shown = format!("{prefix}{}", name.to_string_lossy());
            if let Some(pid) = name.to_str().and_then(temp_pid) {
                let ours = at::regular_file_owner(dir.as_fd(), &name) == Some(self.uid);
                let dead = pid.parse().is_ok_and(at::process_is_gone);
                if ours && dead && at::unlink(dir.as_fd(), &name).is_ok() {
                    tracing::info!(name = %shown, "removed a dead upload's temporary file");
                    self.removed.push(shown);
                }
                continue;
            }
            if depth < SWEEP_DEPTH {
                if let Ok(Node::Dir(sub)) = at::lookup(dir.as_fd(), &name) {
                    self.dir(&Arc::new(sub), &format!("{shown}/"), depth + 1);
                }
            }
        }
    }
}
