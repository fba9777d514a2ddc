//! TFTP ERROR codes (RFC 1350 section 5, RFC 2347 for code 8).

use std::{fmt, io};

/// A TFTP ERROR code. Any 16-bit value can arrive on the wire, so this is a
/// newtype with named constants rather than a closed enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 0: not defined, see the message. Never used for a policy refusal:
    /// U-Boot retries on 0 and gives up on 1 and 2.
    pub const UNDEFINED: ErrorCode = ErrorCode(0);
    /// 1: file not found.
    pub const FILE_NOT_FOUND: ErrorCode = ErrorCode(1);
    /// 2: access violation (path outside the root, write policy).
    pub const ACCESS_VIOLATION: ErrorCode = ErrorCode(2);
    /// 3: disk full or allocation exceeded (also the upload size limit).
    pub const DISK_FULL: ErrorCode = ErrorCode(3);
    /// 4: illegal TFTP operation (malformed packet, unsupported mode).
    pub const ILLEGAL_OPERATION: ErrorCode = ErrorCode(4);
    /// 5: unknown transfer ID.
    pub const UNKNOWN_TID: ErrorCode = ErrorCode(5);
    /// 6: file already exists.
    pub const FILE_EXISTS: ErrorCode = ErrorCode(6);
    /// 7: no such user.
    pub const NO_SUCH_USER: ErrorCode = ErrorCode(7);
    /// 8: option negotiation failed (RFC 2347).
    pub const OPTION_NEGOTIATION: ErrorCode = ErrorCode(8);

    /// The RFC's short description of a known code.
    pub fn description(self) -> &'static str {
        match self.0 {
            0 => "not defined",
            1 => "file not found",
            2 => "access violation",
            3 => "disk full or allocation exceeded",
            4 => "illegal TFTP operation",
            5 => "unknown transfer ID",
            6 => "file already exists",
            7 => "no such user",
            8 => "option negotiation failed",
            _ => "unknown error code",
        }
    }
}

impl ErrorCode {
    /// The code for an I/O error from a source or sink, for errors that
    /// surface mid-transfer where only an `io::Error` is at hand.
    pub fn for_io_error(e: &io::Error) -> ErrorCode {
        match e.kind() {
            // A name too long for the file system names no file there.
            io::ErrorKind::NotFound | io::ErrorKind::InvalidFilename => ErrorCode::FILE_NOT_FOUND,
            io::ErrorKind::PermissionDenied => ErrorCode::ACCESS_VIOLATION,
            io::ErrorKind::StorageFull
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::QuotaExceeded => ErrorCode::DISK_FULL,
            io::ErrorKind::AlreadyExists => ErrorCode::FILE_EXISTS,
            _ => ErrorCode::UNDEFINED,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.description())
    }
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> Self {
        ErrorCode(v)
    }
}
