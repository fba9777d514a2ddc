//! The upload sink: bytes go to a hidden temporary file beside the target and
//! appear under the real name only when the transfer completes.
//!
//! Writing in place would let a board fetch a half-uploaded kernel, and would
//! destroy the old file when an upload dies halfway. The temporary file sits in
//! the target's own directory because `rename` and `link` are only atomic
//! within one file system.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::{write_all_at, Sink};

const TAG: &str = ".tftplab-";
const EXT: &str = ".part";
/// Keeps `.<name>.tftplab-<pid>-<n>.part` under the usual 255-byte name limit.
const MAX_STEM: usize = 160;

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

/// True for names of the form [`temp_name`] produces, so listings can hide
/// them and clients cannot ask for them.
pub(crate) fn is_temp_name(c: &str) -> bool {
    let Some(body) = c.strip_prefix('.').and_then(|s| s.strip_suffix(EXT)) else {
        return false;
    };
    let Some(at) = body.rfind(TAG) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut parts = body[at + TAG.len()..].split('-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(pid), Some(n), None) if digits(pid) && digits(n)
    )
}

fn temp_name(file_name: &str) -> String {
    let mut end = file_name.len().min(MAX_STEM);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".{}{TAG}{}-{n}{EXT}", &file_name[..end], std::process::id())
}

/// A [`Sink`] that writes an upload to `.<name>.tftplab-<pid>-<n>.part` in
/// the target's directory and renames (or, with the `create` policy, links)
/// it into place on commit, after an fsync (the store's uploads always; a
/// client's download only when asked, see [`UploadSink::synced`]). Readers
/// see the old file or the whole new one, never a mix; concurrent uploads
/// of one name never interleave.
///
/// Dropping it without a successful [`Sink::commit`] deletes the temporary
/// file, so a transfer task that dies or is cancelled leaves nothing behind.
#[derive(Debug)]
pub struct UploadSink {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
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
        Ok(Self::create(target, Commit::Replace, None)?.synced(false))
    }

    /// Whether commit makes the file durable (fsync of the file before the
    /// rename and of its directory after).
    pub fn synced(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    pub(crate) fn create(target: PathBuf, commit: Commit, limit: Option<u64>) -> io::Result<Self> {
        let dir = target.parent().ok_or(io::ErrorKind::InvalidInput)?;
        let file_name = target
            .file_name()
            .ok_or(io::ErrorKind::InvalidInput)?
            .to_string_lossy();
        // A stale file from an earlier process with the same pid can collide.
        let mut attempts = 0;
        let (file, temp) = loop {
            let temp = dir.join(temp_name(&file_name));
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => break (file, temp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        };
        Ok(UploadSink {
            file: Some(file),
            temp,
            target,
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

    /// Moves the synced temporary file into place.
    fn publish(&self) -> io::Result<()> {
        match self.commit {
            Commit::Replace => fs::rename(&self.temp, &self.target)?,
            Commit::NoClobber => match fs::hard_link(&self.temp, &self.target) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.temp);
                }
                // No hard links on this file system: fall back to a checked
                // rename, which leaves a small window for a racing creator.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    if fs::symlink_metadata(&self.target).is_ok() {
                        return Err(io::ErrorKind::AlreadyExists.into());
                    }
                    fs::rename(&self.temp, &self.target)?
                }
                Err(e) => return Err(e),
            },
        }
        if self.durable {
            sync_dir(&self.target);
        }
        Ok(())
    }

    fn discard(&mut self) {
        // Close first: Windows cannot delete an open file.
        self.file = None;
        if !self.finished {
            self.finished = true;
            let _ = fs::remove_file(&self.temp);
        }
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
            let _ = fs::remove_file(&self.temp);
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

/// Makes the rename itself durable; best effort, as some file systems refuse
/// to sync a directory and the data is already safe.
fn sync_dir(target: &Path) {
    #[cfg(unix)]
    if let Some(dir) = target.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = target;
}
