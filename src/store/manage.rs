//! The operator's API: put, list, delete, hash, and clean up on close.
//!
//! These calls bypass the TFTP write policy (the operator decides what the
//! boards may fetch) but not path confinement, and they always create missing
//! directories, since staging `9ffefdef/start4.elf` is routine. Every put is
//! atomic like a TFTP upload, and skips the write when the content is already
//! there, so re-staging the same boot files does not touch files a board may
//! be reading at that moment.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::at::{self, DirFd, Node, Opened};
use super::error::StoreError;
use super::path::{Goal, Reached, Walker, WriteTarget};
use super::upload::{is_temp_name, Commit, UploadSink};
use super::Store;
use crate::data::Sink;

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// No file had the name before.
    pub created: bool,
    /// The file already had this content, so nothing was written.
    pub skipped_identical: bool,
    pub sha256: [u8; 32],
    pub size: u64,
}

impl PutOutcome {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// A file in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the root, `/`-separated. Names that are not UTF-8 appear
    /// lossily converted.
    pub name: String,
    pub size: u64,
}

/// The identity of some content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Content {
    sha256: [u8; 32],
    size: u64,
}

/// Files and directories created by puts, for `remove_created_on_close`.
#[derive(Debug, Default)]
pub(crate) struct Created {
    files: std::collections::BTreeSet<PathBuf>,
    /// Parents before children, so cleanup walks it backwards.
    dirs: Vec<PathBuf>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hashes everything `reader` yields, and passes it on to `sink` if given.
fn hash_stream(
    mut reader: impl Read,
    mut sink: Option<&mut UploadSink>,
) -> Result<Content, CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buf[..n]);
        if let Some(sink) = sink.as_deref_mut() {
            sink.write_at(size, &buf[..n]).map_err(CopyError::Write)?;
        }
        size += n as u64;
    }
    Ok(Content {
        sha256: hasher.finalize().into(),
        size,
    })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn file_content(file: File) -> io::Result<Content> {
    hash_stream(file, None).map_err(|(CopyError::Read(e) | CopyError::Write(e))| e)
}

/// Whether the file at `target` holds `content`; the size check spares
/// hashing most changed files. Something else there now does not hold it.
fn holds(target: &WriteTarget, content: Content) -> io::Result<bool> {
    let Opened::File(file) = at::open_read(target.dir.as_fd(), &target.file)? else {
        return Ok(false);
    };
    if file.metadata()?.len() != content.size {
        return Ok(false);
    }
    Ok(file_content(file)?.sha256 == content.sha256)
}

impl Store {
    pub fn put_bytes(&self, name: &str, data: &[u8]) -> Result<PutOutcome, StoreError> {
        let content = Content {
            sha256: Sha256::digest(data).into(),
            size: data.len() as u64,
        };
        self.put(name, Some(content), data, &|e| io_err(name, e))
    }

    /// Copies a local file in. It is read twice when it differs from the
    /// stored one (hash first, so an identical file costs no temporary copy).
    pub fn put_file(&self, name: &str, local: impl AsRef<Path>) -> Result<PutOutcome, StoreError> {
        let local = local.as_ref();
        let local_err = |e| StoreError::Local {
            path: local.to_path_buf(),
            source: e,
        };
        let content = File::open(local)
            .and_then(file_content)
            .map_err(local_err)?;
        let file = File::open(local).map_err(local_err)?;
        self.put(name, Some(content), file, &local_err)
    }

    /// Streams `reader` in. Its content is only known at the end, so an
    /// identical upload still costs a temporary copy, which is then dropped.
    pub fn put_reader(&self, name: &str, reader: impl Read) -> Result<PutOutcome, StoreError> {
        self.put(name, None, reader, &|e| io_err(name, e))
    }

    fn put(
        &self,
        name: &str,
        known: Option<Content>,
        reader: impl Read,
        read_err: &dyn Fn(io::Error) -> StoreError,
    ) -> Result<PutOutcome, StoreError> {
        let target = self.resolve_write(name, true)?;
        let existed = target.existed;
        let outcome = |c: Content, skipped| PutOutcome {
            created: !existed,
            skipped_identical: skipped,
            sha256: c.sha256,
            size: c.size,
        };
        if let Some(c) = known.filter(|_| existed) {
            if holds(&target, c).map_err(|e| io_err(name, e))? {
                return Ok(outcome(c, true));
            }
        }
        let path = target.path();
        let mut sink = self.sink(name, target.clone(), Commit::Replace, None)?;
        let c = hash_stream(reader, Some(&mut sink)).map_err(|e| match e {
            CopyError::Read(e) => read_err(e),
            CopyError::Write(e) => io_err(name, e),
        })?;
        if known.is_none() && existed && holds(&target, c).unwrap_or(false) {
            sink.abort();
            return Ok(outcome(c, true));
        }
        let made = sink.made_dirs();
        sink.commit().map_err(|e| io_err(name, e))?;
        let files = if existed { Vec::new() } else { vec![path] };
        self.track(files, made);
        Ok(outcome(c, false))
    }

    fn track(&self, files: Vec<PathBuf>, dirs: Vec<PathBuf>) {
        if self.config.remove_created_on_close && !(files.is_empty() && dirs.is_empty()) {
            let mut created = self.created();
            created.files.extend(files);
            created.dirs.extend(dirs);
        }
    }

    fn created(&self) -> std::sync::MutexGuard<'_, Created> {
        // The set stays consistent even if a holder panicked.
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every regular file under the root, sorted by name. Symlinks to files
    /// inside the root are listed (they can be fetched); symlinked
    /// directories are not descended into, which also rules out cycles.
    /// Like every lookup, the listing walks directory handles, never paths.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.list_dir(&mut vec![self.root_fd.clone()], &mut Vec::new(), &mut out)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Lists `dirs.last()`, which the root reaches through `names`.
    fn list_dir(
        &self,
        dirs: &mut Vec<DirFd>,
        names: &mut Vec<OsString>,
        out: &mut Vec<Entry>,
    ) -> io::Result<()> {
        let dir = dirs.last().expect("starts at the root").clone();
        for name in at::read_dir(dir.as_fd())? {
            if is_temp_name(&name.to_string_lossy()) {
                continue;
            }
            // An entry deleted while we look, or unreadable, is simply not
            // listed.
            let size = match at::lookup(dir.as_fd(), &name) {
                Ok(Node::Dir(sub)) => {
                    dirs.push(Arc::new(sub));
                    names.push(name);
                    let listed = self.list_dir(dirs, names, out);
                    dirs.pop();
                    names.pop();
                    listed?;
                    continue;
                }
                Ok(Node::File(size)) => size,
                Ok(Node::Link(_)) => {
                    let walk = Walker::from_dirs(self, dirs.clone(), names.clone(), [name.clone()]);
                    match walk.run(Goal::Read) {
                        Ok(Reached::File { file, .. }) => match file.metadata() {
                            Ok(meta) => meta.len(),
                            Err(_) => continue,
                        },
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let mut rel: Vec<_> = names.iter().map(|n| n.to_string_lossy()).collect();
            rel.push(name.to_string_lossy());
            out.push(Entry {
                name: rel.join("/"),
                size,
            });
        }
        Ok(())
    }

    /// Removes a file. For a symlink, the link goes and its target stays.
    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        // What the name leads to must be a file inside the root...
        self.open_file(name)?;
        // ...and what goes is the last component, in the directory holding it.
        let (dir, dir_path, last) = self.parent_of(name)?;
        at::unlink(dir.as_fd(), &last).map_err(|e| StoreError::from_io(name, e))?;
        self.created().files.remove(&dir_path.join(last));
        Ok(())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.open_file(name).is_ok()
    }

    /// The lowercase hex SHA-256 of a stored file.
    pub fn sha256(&self, name: &str) -> Result<String, StoreError> {
        let (file, _) = self.open_file(name)?;
        let content = file_content(file).map_err(|e| StoreError::from_io(name, e))?;
        Ok(hex(&content.sha256))
    }

    /// With `remove_created_on_close`, removes the files that puts created
    /// (files that existed before a put are left alone, even if overwritten),
    /// then the directories puts created, where empty. Returns the removed
    /// files' names, sorted. Files that could not be removed stay tracked and
    /// the first such error is returned. Not done on drop: the embedding
    /// program decides when a session ends, and wants to hear of failures.
    pub fn close(&self) -> Result<Vec<String>, StoreError> {
        let mut created = self.created();
        let files = std::mem::take(&mut created.files);
        let mut removed = Vec::new();
        let mut first_err = None;
        for path in files {
            let name = self.relative_name(&path);
            let removed_file = self
                .parent_of_path(&path)
                .and_then(|(dir, last)| at::unlink(dir.as_fd(), &last));
            match removed_file {
                Ok(()) => removed.push(name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(io_err(&name, e));
                    created.files.insert(path);
                }
            }
        }
        for dir in std::mem::take(&mut created.dirs).iter().rev() {
            if let Ok((parent, last)) = self.parent_of_path(dir) {
                let _ = at::remove_dir(parent.as_fd(), &last);
            }
        }
        first_err.map_or(Ok(removed), Err)
    }
}

fn io_err(name: &str, source: io::Error) -> StoreError {
    StoreError::Io {
        name: name.to_owned(),
        source,
    }
}
