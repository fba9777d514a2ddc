//! The few `*at` system calls the store is built from. Every name passed
//! here is one plain component, looked up in a directory the caller holds
//! open, so what happens to paths meanwhile cannot redirect it.
//!
//! On Linux a lookup opens the name with `O_PATH | O_NOFOLLOW` and asks the
//! handle what it is (`fstat`, `readlinkat(fd, "")`), so the answer is about
//! the very object found, and nothing is opened for reading until it is known
//! to be a regular file. Other unix systems lack `O_PATH`; there a directory
//! is opened with `O_DIRECTORY | O_NOFOLLOW` and anything else is looked at
//! with `fstatat(AT_SYMLINK_NOFOLLOW)`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// A directory held open. Shared, so an upload can keep the directory it
/// writes into without reopening it.
pub(crate) type DirFd = Arc<OwnedFd>;

/// What a name in a directory is, looked at without following it.
#[derive(Debug)]
pub(crate) enum Node {
    Dir(OwnedFd),
    /// A symlink, with its target.
    Link(OsString),
    /// A regular file, with its size.
    File(u64),
    /// A FIFO, socket or device.
    Other,
    Missing,
}

/// Flags for a handle that only names a directory, for use as `dirfd`.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DIR_HANDLE: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const DIR_HANDLE: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Flags for reading a file whose type is not yet checked: a symlink fails
/// (`ELOOP`), a FIFO opens at once instead of waiting for a writer, and a
/// terminal does not become the controlling one.
const READ: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens a directory named by a host path (the root, or the directory of a
/// client's download), following links: the operator chose that path.
pub(crate) fn open_dir_path(path: &Path) -> io::Result<DirFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(Arc::new(rfs::open(path, flags, Mode::empty())?))
}

/// Looks `name` up in `dir` without following it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn lookup(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Node> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(Node::Missing),
        Err(e) => return Err(e.into()),
    };
    let stat = rfs::fstat(&fd)?;
    Ok(match FileType::from_raw_mode(stat.st_mode as _) {
        FileType::Directory => Node::Dir(fd),
        FileType::Symlink => Node::Link(link_target(rfs::readlinkat(&fd, "", Vec::new())?)),
        FileType::RegularFile => Node::File(stat.st_size as u64),
        _ => Node::Other,
    })
}

/// Looks `name` up in `dir` without following it.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn lookup(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Node> {
    match rfs::openat(dir, name, DIR_HANDLE, Mode::empty()) {
        Ok(fd) => return Ok(Node::Dir(fd)),
        Err(Errno::NOENT) => return Ok(Node::Missing),
        Err(Errno::ACCESS) => return Err(Errno::ACCESS.into()),
        // A symlink (ELOOP, or EMLINK/EFTYPE on some BSDs) or a non-directory.
        Err(_) => {}
    }
    let stat = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(Node::Missing),
        Err(e) => return Err(e.into()),
    };
    Ok(match FileType::from_raw_mode(stat.st_mode as _) {
        FileType::Symlink => Node::Link(link_target(rfs::readlinkat(dir, name, Vec::new())?)),
        FileType::RegularFile => Node::File(stat.st_size as u64),
        // A directory that was not one a moment ago: report it as something
        // the caller cannot use rather than chase it.
        _ => Node::Other,
    })
}

fn link_target(target: std::ffi::CString) -> OsString {
    OsString::from_vec(target.into_bytes())
}

/// What opening a name for reading found.
#[derive(Debug)]
pub(crate) enum Opened {
    File(File),
    /// The name is a symlink (now); here is its target.
    Link(OsString),
    /// Something that is not a regular file, checked on the opened handle.
    NotAFile,
    Missing,
    /// The name changed between two looks; look again.
    Changed,
}

/// Opens `name` in `dir` for reading without following a symlink, and checks
/// the type on the handle it got. Never blocks on a FIFO.
pub(crate) fn open_read(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Opened> {
    match rfs::openat(dir, name, READ, Mode::empty()) {
        Ok(fd) => {
            let stat = rfs::fstat(&fd)?;
            if FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile {
                Ok(Opened::File(File::from(fd)))
            } else {
                Ok(Opened::NotAFile)
            }
        }
        Err(Errno::NOENT) => Ok(Opened::Missing),
        // A socket cannot be opened at all, nor can some devices.
        Err(Errno::NXIO | Errno::NODEV) => Ok(Opened::NotAFile),
        Err(Errno::LOOP) => match rfs::readlinkat(dir, name, Vec::new()) {
            Ok(target) => Ok(Opened::Link(link_target(target))),
            Err(Errno::INVAL) => Ok(Opened::Changed),
            Err(Errno::NOENT) => Ok(Opened::Missing),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Opens a directory entry that must be a real directory (not a link) as a
/// handle for further `*at` calls.
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    match rfs::openat(dir, name, DIR_HANDLE, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // Replaced by a link or a file since it was made or looked at.
        Err(Errno::LOOP | Errno::NOTDIR) => Err(io::ErrorKind::NotFound.into()),
        Err(e) => Err(e.into()),
    }
}

/// A handle to `dir` that can be read or synced (a `DIR_HANDLE` may be an
/// `O_PATH` one, which can do neither).
pub(crate) fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rfs::openat(dir, ".", flags, Mode::empty())?)
}

/// `mkdirat`; `Ok(false)` when something already has the name.
pub(crate) fn make_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o777)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates a new file for writing; fails if the name exists, even as a
/// dangling symlink.
pub(crate) fn create_new(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rfs::openat(
        dir,
        name,
        flags,
        Mode::from_raw_mode(0o666),
    )?))
}

pub(crate) fn rename(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    Ok(rfs::renameat(dir, from, dir, to)?)
}

pub(crate) fn link(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> io::Result<()> {
    Ok(rfs::linkat(dir, from, dir, to, AtFlags::empty())?)
}

/// Whether anything (a dangling link too) has the name.
pub(crate) fn exists(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Removes a directory if it is empty.
pub(crate) fn remove_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

pub(crate) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::fsync(reopen_dir(dir)?)?)
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::new(reopen_dir(dir)?)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    Ok(names)
}

/// Owner and type of an entry, not following a link: `Some(uid)` for a
/// regular file.
pub(crate) fn regular_file_owner(dir: BorrowedFd<'_>, name: &OsStr) -> Option<u32> {
    let stat = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    (FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile).then_some(stat.st_uid)
}

/// True only when `pid` certainly names no process (`kill(pid, 0)` says
/// `ESRCH`); a process of another user (`EPERM`) is alive.
pub(crate) fn process_is_gone(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(Errno::SRCH)
}

pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}
