//! Turning a client's file name into a file or directory that is provably
//! inside the root.
//!
//! Resolution happens in two stages:
//!
//! 1. **Lexical.** A name longer than [`MAX_NAME_BYTES`] or with more than
//!    [`MAX_NAME_COMPONENTS`] components is refused with ERROR 1 before
//!    anything else is done with it (real clients send far less; U-Boot's
//!    limit is 128 bytes). The name is split on `/` (and on `\` when
//!    `backslash_to_slash` is on). Empty and `.` components are dropped, so
//!    leading slashes mean "relative to the root". A `..` removes the previous
//!    component; one with nothing left to remove would climb above the root and
//!    is refused with ERROR 2. So `a/../b` is `b`, while `../x` and
//!    `a/../../x` are refused. Because `..` is settled here, against the name
//!    rather than the disk, a symlinked `a` in `a/../b` is never followed.
//!    NUL bytes, platform prefixes and the store's own temporary-file names
//!    are refused too.
//! 2. **On disk, by handle.** The store holds the root directory open. Each
//!    component is looked up in the directory handle reached so far, never by
//!    path, without following it (`openat(O_PATH | O_NOFOLLOW)` and `fstat`
//!    on what was found, see `at.rs`). A directory's handle is pushed on a
//!    stack. A symlink's target is read from the link itself and its
//!    components are put in front of the remaining ones: a relative target is
//!    resolved from the directory holding the link, where its `..` pops the
//!    stack (popping the root is ERROR 2, and `..` is never asked of the OS);
//!    an absolute target must lie lexically under the canonical root path,
//!    compared component by component so `/srv/tftp-private` is not inside
//!    `/srv/tftp`, and is then resolved from the root's handle. A link that
//!    leads outside is ERROR 2 whether or not its target exists, and before
//!    anything below it is looked at, so the answer says nothing about the
//!    outside. At most [`MAX_LINKS`] links are expanded and [`MAX_STEPS`]
//!    components walked per name; beyond that (a loop) the name is treated
//!    like a dangling link. The final component of a read is opened with
//!    `O_NOFOLLOW | O_NONBLOCK` and its type checked on the opened handle, so
//!    a FIFO or device is ERROR 1 and never blocks the server.
//!
//! Swapping a directory for a symlink while a name is being resolved cannot
//! lead outside: every step is taken from a handle that was itself reached
//! this way, so the worst a local user with write access to the root can do
//! is change which file inside the root a request gets.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::at::{self, DirFd, Node, Opened};
use super::error::{DenyReason, StoreError};
use super::upload::is_temp_name;
use super::Store;

/// Longest name a client may ask for, in bytes.
pub const MAX_NAME_BYTES: usize = 512;
/// Most `/`-separated (non-empty) components a client's name may have,
/// counted before `.` and `..` are settled.
pub const MAX_NAME_COMPONENTS: usize = 32;
/// Most symlinks expanded while resolving one name (Linux's own limit).
pub const MAX_LINKS: usize = 40;
/// Most components looked up on disk while resolving one name, links'
/// targets included.
pub const MAX_STEPS: usize = 1024;

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

/// Where an upload goes: a name in a directory the store holds open.
#[derive(Debug, Clone)]
pub(crate) struct WriteTarget {
    /// The deepest directory that exists.
    pub dir: DirFd,
    /// Its path, for messages and [`crate::store::UploadSink::target`].
    pub dir_path: PathBuf,
    /// Directories below `dir` that have to be created first.
    pub new_dirs: Vec<OsString>,
    /// The file's name in the last of them.
    pub file: OsString,
    /// A regular file is already there.
    pub existed: bool,
}

impl WriteTarget {
    pub fn path(&self) -> PathBuf {
        let mut path = self.dir_path.clone();
        path.extend(&self.new_dirs);
        path.push(&self.file);
        path
    }
}

/// What a walk is after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    Read,
    Write { new_dirs: bool },
    Dir,
}

/// Where a walk ended.
pub(crate) enum Reached {
    File { file: File, path: PathBuf },
    Write(WriteTarget),
    Dir { dir: DirFd, path: PathBuf },
}

/// Why a walk failed, before it is phrased for a read or a write.
#[derive(Debug)]
pub(crate) enum WalkError {
    OutsideRoot,
    NotFound,
    /// An upload into a directory that does not exist, with creating
    /// directories off.
    NoDirectory,
    /// A link whose target is missing, a loop, or too many links.
    Dangling,
    /// A directory, FIFO, socket or device where a file was wanted.
    NotAFile,
    Io(io::Error),
}

impl From<io::Error> for WalkError {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

impl WalkError {
    fn into_store_error(self, name: &str, goal: Goal) -> StoreError {
        let name = name.to_owned();
        match (self, goal) {
            (WalkError::OutsideRoot, _) => StoreError::Denied {
                name,
                reason: DenyReason::OutsideRoot,
            },
            (WalkError::Dangling, Goal::Write { .. }) => StoreError::Denied {
                name,
                reason: DenyReason::DanglingLink,
            },
            (WalkError::NotAFile, Goal::Write { .. }) => StoreError::Denied {
                name,
                reason: DenyReason::NotRegularTarget,
            },
            (WalkError::NotAFile, Goal::Read) => StoreError::NotAFile { name },
            (WalkError::NoDirectory, _) => StoreError::NoDirectory { name },
            (WalkError::NotFound | WalkError::Dangling | WalkError::NotAFile, _) => {
                StoreError::NotFound { name }
            }
            (WalkError::Io(e), _) => StoreError::from_io(&name, e),
        }
    }

    /// For the store's own bookkeeping, which has no client to answer.
    pub fn into_io(self) -> io::Error {
        match self {
            WalkError::Io(e) => e,
            WalkError::OutsideRoot => io::ErrorKind::PermissionDenied.into(),
            _ => io::ErrorKind::NotFound.into(),
        }
    }
}

/// One component still to look up.
struct Pending {
    name: OsString,
    /// It came from a symlink's target, not from the name asked for.
    from_link: bool,
}

/// A resolution in progress: the directories from the root down to where it
/// stands, and what is left to look up.
pub(crate) struct Walker<'s> {
    store: &'s Store,
    /// `dirs[0]` is the root.
    dirs: Vec<DirFd>,
    /// The names of `dirs[1..]`.
    names: Vec<OsString>,
    /// The next component last.
    pending: Vec<Pending>,
    links: usize,
    steps: usize,
}

/// Stage one: the lexical components of `name`, with `.` and `..` settled.
pub(crate) fn split_name(name: &str, backslash_to_slash: bool) -> Result<Vec<String>, StoreError> {
    let is_sep = |c: char| c == '/' || (backslash_to_slash && c == '\\');
    // Bounded first, before anything proportional to the name is allocated.
    if name.len() > MAX_NAME_BYTES
        || name.split(is_sep).filter(|c| !c.is_empty()).count() > MAX_NAME_COMPONENTS
    {
        return Err(StoreError::name_too_long(name));
    }
    let deny = |reason| StoreError::denied(name, reason);
    if name.contains('\0') {
        return Err(deny(DenyReason::NulByte));
    }
    let mut out: Vec<String> = Vec::new();
    for c in name.split(is_sep) {
        match c {
            "" | "." => {}
            ".." => {
                out.pop().ok_or_else(|| deny(DenyReason::OutsideRoot))?;
            }
            c if is_temp_name(c) => return Err(deny(DenyReason::Reserved)),
            c if !is_plain_component(c) => return Err(deny(DenyReason::BadComponent)),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// True when the platform's own parser sees `c` as exactly one ordinary
/// name. Catches what `/`-splitting cannot.
fn is_plain_component(c: &str) -> bool {
    let mut parts = Path::new(c).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(n)), None) if n == OsStr::new(c)
    )
}

impl<'s> Walker<'s> {
    /// A walk of `comps` (plain components) starting at the root.
    pub fn from_root(store: &'s Store, comps: impl IntoIterator<Item = OsString>) -> Self {
        Self::from_dirs(store, vec![store.root_fd.clone()], Vec::new(), comps)
    }

    /// A walk starting in `dirs.last()`, reached from the root through
    /// `names` (so a link's `..` can climb back up to the root, no further).
    pub fn from_dirs(
        store: &'s Store,
        dirs: Vec<DirFd>,
        names: Vec<OsString>,
        comps: impl IntoIterator<Item = OsString>,
    ) -> Self {
        let mut pending: Vec<Pending> = comps
            .into_iter()
            .map(|name| Pending {
                name,
                from_link: false,
            })
            .collect();
        pending.reverse();
        Walker {
            store,
            dirs,
            names,
            pending,
            links: 0,
            steps: 0,
        }
    }

    fn current(&self) -> &DirFd {
        self.dirs.last().expect("the root is never popped")
    }

    fn path(&self) -> PathBuf {
        let mut path = self.store.root.clone();
        path.extend(&self.names);
        path
    }

    /// Puts a symlink's target in front of what is left.
    fn expand(&mut self, target: OsString) -> Result<(), WalkError> {
        self.links += 1;
        if self.links > MAX_LINKS || target.is_empty() {
            return Err(WalkError::Dangling);
        }
        let bytes = target.as_bytes();
        let mut comps = bytes
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".");
        if bytes.starts_with(b"/") {
            // Absolute: only lexically under the canonical root, and then
            // from the root's own handle.
            for want in self.store.root.components().skip(1) {
                match comps.next() {
                    Some(c) if c == want.as_os_str().as_bytes() => {}
                    _ => return Err(WalkError::OutsideRoot),
                }
            }
            self.dirs.truncate(1);
            self.names.clear();
        }
        let start = self.pending.len();
        self.pending.extend(comps.map(|c| Pending {
            name: OsStr::from_bytes(c).to_owned(),
            from_link: true,
        }));
        self.pending[start..].reverse();
        Ok(())
    }

    /// Walks to the end of the name.
    pub fn run(mut self, goal: Goal) -> Result<Reached, WalkError> {
        while let Some(c) = self.pending.pop() {
            if c.name.as_bytes() == b".." {
                if self.dirs.len() == 1 {
                    return Err(WalkError::OutsideRoot);
                }
                self.dirs.pop();
                self.names.pop();
                continue;
            }
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(WalkError::Dangling);
            }
            let last = self.pending.is_empty();
            let dir = self.current().clone();
            match at::lookup(dir.as_fd(), &c.name)? {
                Node::Link(target) => self.expand(target)?,
                Node::Dir(fd) if !last || goal == Goal::Dir => {
                    self.dirs.push(Arc::new(fd));
                    self.names.push(c.name);
                }
                Node::Missing => return self.missing(c, goal),
                _ if !last => return Err(WalkError::NotFound),
                Node::Dir(_) | Node::Other => return Err(WalkError::NotAFile),
                Node::File(_) => match goal {
                    Goal::Dir => return Err(WalkError::NotFound),
                    Goal::Write { .. } => return Ok(Reached::Write(self.target(c.name, true))),
                    // Looked at by name; now open it and check what was opened.
                    Goal::Read => match at::open_read(dir.as_fd(), &c.name)? {
                        Opened::File(file) => {
                            let path = self.path().join(&c.name);
                            return Ok(Reached::File { file, path });
                        }
                        Opened::Link(target) => self.expand(target)?,
                        Opened::NotAFile => return Err(WalkError::NotAFile),
                        Opened::Missing => return Err(WalkError::NotFound),
                        Opened::Changed => self.pending.push(c),
                    },
                },
            }
        }
        // Nothing left: the walk stands on a directory (the root, perhaps).
        match goal {
            Goal::Dir => Ok(Reached::Dir {
                dir: self.current().clone(),
                path: self.path(),
            }),
            Goal::Read | Goal::Write { .. } => Err(WalkError::NotAFile),
        }
    }

    /// `c` does not exist: fine for an upload (maybe with new directories),
    /// unless a link led here.
    fn missing(mut self, c: Pending, goal: Goal) -> Result<Reached, WalkError> {
        if c.from_link || self.pending.iter().any(|p| p.from_link) {
            return Err(WalkError::Dangling);
        }
        let Goal::Write { new_dirs } = goal else {
            return Err(WalkError::NotFound);
        };
        if !self.pending.is_empty() && !new_dirs {
            return Err(WalkError::NoDirectory);
        }
        let mut rest: Vec<OsString> = std::iter::once(c.name)
            .chain(self.pending.drain(..).rev().map(|p| p.name))
            .collect();
        let file = rest.pop().expect("holds c");
        let mut target = self.target(file, false);
        target.new_dirs = rest;
        Ok(Reached::Write(target))
    }

    fn target(&self, file: OsString, existed: bool) -> WriteTarget {
        WriteTarget {
            dir: self.current().clone(),
            dir_path: self.path(),
            new_dirs: Vec::new(),
            file,
            existed,
        }
    }
}

impl Store {
    /// Resolves a client's file name to a path inside the root, or says which
    /// ERROR to send. Never panics, whatever the string.
    ///
    /// This is a check: the path is where the walk ended when it was made.
    /// To act on a name, use [`Store::open_read`] or [`Store::open_write`],
    /// which keep the handles the walk reached instead of a path.
    pub fn resolve(&self, name: &str, intent: Intent) -> Result<PathBuf, StoreError> {
        match intent {
            Intent::Read => Ok(self.open_file(name)?.1),
            Intent::Write => Ok(self.resolve_write(name, self.config.create_dirs)?.path()),
        }
    }

    pub(crate) fn components(&self, name: &str) -> Result<Vec<String>, StoreError> {
        split_name(name, self.config.backslash_to_slash)
    }

    /// Walks a client's name from the root.
    fn walk_name(&self, name: &str, goal: Goal) -> Result<Reached, StoreError> {
        let comps = self.components(name)?;
        Walker::from_root(self, comps.into_iter().map(OsString::from))
            .run(goal)
            .map_err(|e| e.into_store_error(name, goal))
    }

    /// Opens a client's name for reading: a regular file inside the root.
    pub(crate) fn open_file(&self, name: &str) -> Result<(File, PathBuf), StoreError> {
        match self.walk_name(name, Goal::Read)? {
            Reached::File { file, path } => Ok((file, path)),
            _ => unreachable!("a read walk ends at a file"),
        }
    }

    /// Resolves an upload target. `new_dirs` lets the final file sit in
    /// directories that do not exist yet; they are not created here.
    pub(crate) fn resolve_write(
        &self,
        name: &str,
        new_dirs: bool,
    ) -> Result<WriteTarget, StoreError> {
        match self.walk_name(name, Goal::Write { new_dirs })? {
            Reached::Write(target) => Ok(target),
            _ => unreachable!("a write walk ends at a target"),
        }
    }

    /// The directory holding the last component of a client's name, its
    /// path, and that component.
    pub(crate) fn parent_of(&self, name: &str) -> Result<(DirFd, PathBuf, OsString), StoreError> {
        let mut comps = self.components(name)?;
        let Some(last) = comps.pop() else {
            return Err(StoreError::NotAFile {
                name: name.to_owned(),
            });
        };
        let walk = Walker::from_root(self, comps.into_iter().map(OsString::from));
        match walk.run(Goal::Dir) {
            Ok(Reached::Dir { dir, path }) => Ok((dir, path, last.into())),
            Ok(_) => unreachable!("a directory walk ends at a directory"),
            Err(e) => Err(e.into_store_error(name, Goal::Dir)),
        }
    }

    /// The directory holding a path inside the root (one a walk reported),
    /// and the path's last component. For the store's own bookkeeping.
    pub(crate) fn parent_of_path(&self, path: &Path) -> io::Result<(DirFd, OsString)> {
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
        let mut comps: Vec<OsString> = rel.iter().map(OsStr::to_owned).collect();
        let last = comps.pop().ok_or(io::ErrorKind::NotFound)?;
        match Walker::from_root(self, comps).run(Goal::Dir) {
            Ok(Reached::Dir { dir, .. }) => Ok((dir, last)),
            Ok(_) => unreachable!("a directory walk ends at a directory"),
            Err(e) => Err(e.into_io()),
        }
    }

    /// The root-relative, `/`-separated name of a path inside the root.
    pub(crate) fn relative_name(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let parts: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
        parts.join("/")
    }
}
