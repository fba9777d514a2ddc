//! Turning a client's file name into a path that is provably inside the root.
//!
//! Resolution happens in two stages, and `..` never reaches the OS:
//!
//! 1. **Lexical.** The name is split on `/` (and on `\` when
//!    `backslash_to_slash` is on). Empty and `.` components are dropped, so
//!    leading slashes mean "relative to the root". A `..` removes the previous
//!    component; one with nothing left to remove would climb above the root and
//!    is refused with ERROR 2. So `a/../b` is `b`, while `../x` and
//!    `a/../../x` are refused. Because `..` is settled here, against the name
//!    rather than the disk, a symlinked `a` in `a/../b` is never followed.
//!    NUL bytes, platform prefixes (`C:` on Windows) and the store's own
//!    temporary-file names are refused too.
//! 2. **On disk.** Starting from the canonical root, each component is looked
//!    up without following links. A symlink is canonicalized and must land
//!    inside the canonical root, compared component by component
//!    ([`Path::starts_with`]), so `/srv/tftp-private` is not inside
//!    `/srv/tftp`. This is checked for every link on the way, not only the
//!    last, and before anything below it is looked at: a link to an outside
//!    directory is ERROR 2 whether or not the requested file exists there, so
//!    the answer says nothing about the outside.
//!
//! What stays open: someone who can create symlinks inside the root can race
//! a check against the later `open`. TFTP clients cannot create symlinks, so
//! only a local user who can already write to the root could try.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::error::{DenyReason, StoreError};
use super::upload::is_temp_name;
use super::Store;

/// What the caller is about to do with the name; it decides which outcomes
/// count as errors (a missing file is fine for an upload, not for a read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Must exist and be a regular file.
    Read,
    /// Either a regular file or a free name in an existing directory (or in a
    /// missing one when `create_dirs` is on). Checks no write policy.
    Write,
}

/// Where an upload goes.
#[derive(Debug, Clone)]
pub(crate) struct WriteTarget {
    /// The final path: `dir`, then `new_dirs`, then the file name.
    pub path: PathBuf,
    /// The deepest directory that exists, canonical.
    pub dir: PathBuf,
    /// Directories below `dir` that have to be created first.
    pub new_dirs: Vec<String>,
    /// A regular file is already there.
    pub existed: bool,
}

/// How far a name could be followed on disk.
struct Walk {
    /// Canonical path of the deepest component that exists.
    existing: PathBuf,
    /// The components after it, which do not exist.
    missing: Vec<String>,
    /// The walk stopped at a symlink that leads nowhere.
    dangling: bool,
}

/// Stage one: the lexical components of `name`, with `.` and `..` settled.
pub(crate) fn split_name(name: &str, backslash_to_slash: bool) -> Result<Vec<String>, DenyReason> {
    if name.contains('\0') {
        return Err(DenyReason::NulByte);
    }
    let converted;
    let name = if backslash_to_slash {
        converted = name.replace('\\', "/");
        converted.as_str()
    } else {
        name
    };
    let mut out: Vec<String> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop().ok_or(DenyReason::OutsideRoot)?;
            }
            c if is_temp_name(c) => return Err(DenyReason::Reserved),
            c if !is_plain_component(c) => return Err(DenyReason::BadComponent),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// True when the platform's own parser sees `c` as exactly one ordinary
/// name. Catches what `/`-splitting cannot: `C:` or `a\b` on Windows.
fn is_plain_component(c: &str) -> bool {
    let mut parts = Path::new(c).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(n)), None) if n == OsStr::new(c)
    )
}

impl Store {
    /// Resolves a client's file name to a path inside the root, or says which
    /// ERROR to send. Never panics, whatever the string.
    pub fn resolve(&self, name: &str, intent: Intent) -> Result<PathBuf, StoreError> {
        match intent {
            Intent::Read => self.resolve_read(name),
            Intent::Write => Ok(self.resolve_write(name, self.config.create_dirs)?.path),
        }
    }

    pub(crate) fn components(&self, name: &str) -> Result<Vec<String>, StoreError> {
        split_name(name, self.config.backslash_to_slash)
            .map_err(|reason| StoreError::denied(name, reason))
    }

    fn resolve_read(&self, name: &str) -> Result<PathBuf, StoreError> {
        let comps = self.components(name)?;
        let not_a_file = || StoreError::NotAFile {
            name: name.to_owned(),
        };
        if comps.is_empty() {
            return Err(not_a_file());
        }
        let walk = self.walk(name, &comps)?;
        if !walk.missing.is_empty() {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
            });
        }
        let meta = fs::metadata(&walk.existing).map_err(|e| StoreError::from_io(name, e))?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        Ok(walk.existing)
    }

    /// Resolves an upload target. `allow_new_dirs` lets the final file sit in
    /// directories that do not exist yet; they are not created here.
    pub(crate) fn resolve_write(
        &self,
        name: &str,
        allow_new_dirs: bool,
    ) -> Result<WriteTarget, StoreError> {
        let comps = self.components(name)?;
        let deny = |reason| StoreError::denied(name, reason);
        if comps.is_empty() {
            return Err(deny(DenyReason::NotRegularTarget));
        }
        let walk = self.walk(name, &comps)?;
        if walk.dangling {
            return Err(deny(DenyReason::DanglingLink));
        }
        let Walk {
            existing, missing, ..
        } = walk;
        if missing.is_empty() {
            let meta = fs::metadata(&existing).map_err(|e| StoreError::from_io(name, e))?;
            if !meta.is_file() {
                return Err(deny(DenyReason::NotRegularTarget));
            }
            let dir = existing.parent().unwrap_or(&self.root).to_path_buf();
            return Ok(WriteTarget {
                path: existing,
                dir,
                new_dirs: Vec::new(),
                existed: true,
            });
        }
        if missing.len() > 1 && !allow_new_dirs {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
            });
        }
        let path = missing.iter().fold(existing.clone(), |p, c| p.join(c));
        let new_dirs = missing[..missing.len() - 1].to_vec();
        Ok(WriteTarget {
            path,
            dir: existing,
            new_dirs,
            existed: false,
        })
    }

    /// Stage two: follows `comps` from the root, checking every symlink met.
    fn walk(&self, name: &str, comps: &[String]) -> Result<Walk, StoreError> {
        let mut cur = self.root.clone();
        for (i, c) in comps.iter().enumerate() {
            let next = cur.join(c);
            let stop = |dangling| Walk {
                existing: cur.clone(),
                missing: comps[i..].to_vec(),
                dangling,
            };
            match fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(&next) {
                    Ok(target) if target.starts_with(&self.root) => cur = target,
                    Ok(_) => return Err(StoreError::denied(name, DenyReason::OutsideRoot)),
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        return Err(StoreError::from_io(name, e))
                    }
                    // Missing target or a loop: nothing there to serve.
                    Err(_) => return Ok(stop(true)),
                },
                Ok(_) => cur = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(stop(false)),
                Err(e) => return Err(StoreError::from_io(name, e)),
            }
        }
        Ok(Walk {
            existing: cur,
            missing: Vec::new(),
            dangling: false,
        })
    }

    /// The canonical directory named by `comps` (lexical components of
    /// `name`), checked like any other name.
    pub(crate) fn resolve_dir(&self, name: &str, comps: &[String]) -> Result<PathBuf, StoreError> {
        let walk = self.walk(name, comps)?;
        if walk.dangling || !walk.missing.is_empty() || !walk.existing.is_dir() {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
            });
        }
        Ok(walk.existing)
    }

    /// Creates the missing directories of an upload target, then resolves the
    /// name again so the result is checked against what is now on disk.
    /// Returns the directories this call created, parents first.
    pub(crate) fn make_dirs(
        &self,
        name: &str,
        target: WriteTarget,
    ) -> Result<(WriteTarget, Vec<PathBuf>), StoreError> {
        if target.new_dirs.is_empty() {
            return Ok((target, Vec::new()));
        }
        let mut created = Vec::new();
        let mut dir = target.dir;
        for c in &target.new_dirs {
            dir.push(c);
            match fs::create_dir(&dir) {
                Ok(()) => created.push(dir.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::from_io(name, e)),
            }
        }
        let again = self.resolve_write(name, false)?;
        Ok((again, created))
    }

    /// The root-relative, `/`-separated name of a path inside the root.
    pub(crate) fn relative_name(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let parts: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
        parts.join("/")
    }
}
