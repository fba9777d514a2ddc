//! Store errors and their TFTP ERROR codes.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::wire::ErrorCode;

/// Why a request was refused with ERROR 2. Kept apart from the error so a
/// log line can say exactly which rule fired, while the client learns only
/// what is no help to someone probing the root ([`DenyReason::public`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// A `..` that would climb above the root, or a symlink whose target lies
    /// outside the canonical root.
    OutsideRoot,
    /// The name contains a NUL byte.
    NulByte,
    /// A component that cannot be a plain file name on this platform (a
    /// drive prefix on Windows, for instance).
    BadComponent,
    /// The name looks like one of the store's own temporary upload files.
    Reserved,
    /// The write policy is `off`.
    WritesDisabled,
    /// The operating system said no.
    Permission,
    /// An upload aimed at a directory (or the root itself) or at something
    /// that is not a regular file.
    NotRegularTarget,
    /// An upload through a symlink whose target does not exist, so its
    /// destination cannot be checked.
    DanglingLink,
}

impl DenyReason {
    /// What the ERROR packet may say about this refusal: the server's
    /// policy and what the OS said are the client's business (a lab user
    /// whose upload fails wants to know that uploads are off, not guess);
    /// whether a name leads outside the root, through which symlink, or onto
    /// a temporary file or a directory is not, since it would map the root
    /// for whoever asks.
    pub fn public(self) -> Option<&'static str> {
        match self {
            DenyReason::WritesDisabled => Some("uploads are disabled"),
            DenyReason::Permission => Some("permission denied"),
            DenyReason::NulByte | DenyReason::BadComponent => Some("invalid file name"),
            DenyReason::OutsideRoot
            | DenyReason::Reserved
            | DenyReason::NotRegularTarget
            | DenyReason::DanglingLink => None,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::OutsideRoot => "path leaves the root",
            DenyReason::NulByte => "name contains a NUL byte",
            DenyReason::BadComponent => "invalid path component",
            DenyReason::Reserved => "reserved name",
            DenyReason::WritesDisabled => "uploads are disabled",
            DenyReason::Permission => "permission denied",
            DenyReason::NotRegularTarget => "not a regular file",
            DenyReason::DanglingLink => "dangling symlink",
        })
    }
}

/// A refused or failed store operation. `name` is always the name the client
/// or operator asked for, never a host path, so `Display` is safe to log next
/// to the peer address and [`StoreError::message`] is safe to send.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{name:?}: file not found")]
    NotFound { name: String },
    /// An upload into a directory that does not exist, while the store
    /// creates none ([`super::StoreConfig::create_dirs`] off).
    #[error("{name:?}: its directory does not exist, and uploads may not create directories (serve --create-dirs allows it)")]
    NoDirectory { name: String },
    /// A directory, the root itself, a FIFO or a device asked for by a read.
    #[error("{name:?}: not a regular file")]
    NotAFile { name: String },
    #[error("{name:?}: access violation: {reason}")]
    Denied { name: String, reason: DenyReason },
    #[error("{name:?}: file already exists")]
    Exists { name: String },
    /// A name over [`MAX_NAME_BYTES`] or [`MAX_NAME_COMPONENTS`]. ERROR 1,
    /// which makes U-Boot give up rather than retry. `name` holds only the
    /// start of the name (and an ellipsis), so a hostile name cannot flood
    /// the logs; `len` is its full length in bytes.
    ///
    /// [`MAX_NAME_BYTES`]: super::MAX_NAME_BYTES
    /// [`MAX_NAME_COMPONENTS`]: super::MAX_NAME_COMPONENTS
    #[error("{name:?}: name too long ({len} bytes)")]
    NameTooLong { name: String, len: usize },
    #[error("{name:?}: {source}")]
    Io {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A management `put_file` could not read its local input. Operator-only:
    /// this one does carry a host path.
    #[error("reading {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// The code to put in the TFTP ERROR packet. Refusals are 1, 2 or 6,
    /// never 0: U-Boot retries on 0, which turns a policy refusal into a loop.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound { .. }
            | StoreError::NoDirectory { .. }
            | StoreError::NotAFile { .. }
            | StoreError::NameTooLong { .. } => ErrorCode::FILE_NOT_FOUND,
            StoreError::Denied { .. } => ErrorCode::ACCESS_VIOLATION,
            StoreError::Exists { .. } => ErrorCode::FILE_EXISTS,
            StoreError::Io { source, .. } | StoreError::Local { source, .. } => {
                ErrorCode::for_io_error(source)
            }
        }
    }

    /// The text for the ERROR packet: short, free of host paths, and saying
    /// which rule fired only where [`DenyReason::public`] allows.
    pub fn message(&self) -> String {
        match self {
            StoreError::NotFound { .. }
            | StoreError::NotAFile { .. }
            | StoreError::NameTooLong { .. } => "File not found".into(),
            // Only an upload gets here, and writes are on: the uploader
            // may know that its directory is what is missing.
            StoreError::NoDirectory { .. } => "Directory not found".into(),
            StoreError::Denied { reason, .. } => match reason.public() {
                Some(why) => format!("Access violation: {why}"),
                None => "Access violation".into(),
            },
            StoreError::Exists { .. } => "File already exists".into(),
            StoreError::Io { source, .. } | StoreError::Local { source, .. } => io_message(source),
        }
    }

    /// The name the request asked for (empty for [`StoreError::Local`],
    /// shortened for [`StoreError::NameTooLong`]).
    pub fn name(&self) -> &str {
        match self {
            StoreError::NotFound { name }
            | StoreError::NoDirectory { name }
            | StoreError::NameTooLong { name, .. }
            | StoreError::NotAFile { name }
            | StoreError::Denied { name, .. }
            | StoreError::Exists { name }
            | StoreError::Io { name, .. } => name,
            StoreError::Local { .. } => "",
        }
    }

    pub(crate) fn denied(name: &str, reason: DenyReason) -> Self {
        StoreError::Denied {
            name: name.to_owned(),
            reason,
        }
    }

    /// Keeps the first [`SHOWN_NAME_CHARS`] characters of the name.
    pub(crate) fn name_too_long(name: &str) -> Self {
        let shown = match name.char_indices().nth(SHOWN_NAME_CHARS) {
            Some((end, _)) => format!("{}…", &name[..end]),
            None => name.to_owned(),
        };
        StoreError::NameTooLong {
            name: shown,
            len: name.len(),
        }
    }

    /// Classifies an OS error met while looking a name up or opening it, so
    /// that "missing" and "forbidden" get their own codes instead of 0.
    pub(crate) fn from_io(name: &str, e: io::Error) -> Self {
        let name = name.to_owned();
        match e.kind() {
            // A component longer than the file system allows names nothing.
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => StoreError::NotFound { name },
            io::ErrorKind::PermissionDenied => StoreError::Denied {
                name,
                reason: DenyReason::Permission,
            },
            io::ErrorKind::AlreadyExists => StoreError::Exists { name },
            _ => StoreError::Io { name, source: e },
        }
    }
}

/// How much of an overlong name [`StoreError::NameTooLong`] keeps.
const SHOWN_NAME_CHARS: usize = 64;

/// A path-free message for an I/O error: the kind's description, or the
/// store's own wording for the size limit.
fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::FileTooLarge => "File too large".into(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => "Disk full".into(),
        kind => {
            let mut s = kind.to_string();
            if let Some(first) = s.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            s
        }
    }
}
