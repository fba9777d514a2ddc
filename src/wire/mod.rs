//! The TFTP packet codec.
//!
//! [`Packet::parse`] borrows from the datagram (a DATA payload is a slice of
//! the input, never a copy) and [`Packet::emit`] writes into the caller's
//! buffer; the two mirror each other, smoltcp style. The data path uses the
//! allocation-free helpers [`emit_data_header`], [`emit_ack`] and
//! [`emit_error`] directly.
//!
//! How odd input is treated (each case has a test below):
//!
//! | input | outcome |
//! |---|---|
//! | fewer than 2 bytes, or DATA/ACK/ERROR under 4 | [`ParseError::TooShort`] (ERROR 4) |
//! | opcode outside 1..=6 | [`ParseError::UnknownOpcode`] (ERROR 4) |
//! | filename or mode without its NUL | [`ParseError::MissingNul`] (ERROR 4) |
//! | empty filename | [`ParseError::EmptyFilename`] (ERROR 4) |
//! | filename not UTF-8 | [`ParseError::NotUtf8`] (ERROR 4) |
//! | mode other than netascii/octet/mail (any case, any bytes) | [`ParseError::UnknownMode`] (ERROR 4) |
//! | `mail` mode | parses as [`Mode::Mail`]; the server refuses it with ERROR 4 |
//! | bytes after the last option's NUL (NUL padding, or a trailing fragment without its NUL) | ignored |
//! | more than [`MAX_OPTIONS`] options | [`ParseError::TooManyOptions`] (ERROR 8) |
//! | the same option twice | kept; negotiation refuses it with ERROR 8 |
//! | option names and values | raw bytes, so an unknown option need not be UTF-8 |
//! | ERROR message without its NUL, or not UTF-8 | accepted; the message is cut at the first invalid byte |
//! | ACK with bytes after the block number | accepted; the extra bytes are ignored |

mod error_code;

pub use error_code::ErrorCode;

use std::fmt;

/// Largest DATA payload allowed by RFC 2348.
pub const MAX_BLKSIZE: u16 = 65464;
/// Smallest DATA payload allowed by RFC 2348.
pub const MIN_BLKSIZE: u16 = 8;
/// The block size when no `blksize` option is negotiated.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// Size of a DATA header (opcode + block number).
pub const DATA_HEADER_LEN: usize = 4;
/// A buffer this large holds any datagram tftplab emits.
pub const MAX_DATAGRAM: usize = DATA_HEADER_LEN + MAX_BLKSIZE as usize;
/// Requests carrying more options than this are refused (ERROR 8): no real
/// client sends more than five, and a bound keeps parsing cheap.
pub const MAX_OPTIONS: usize = 32;

/// The opcode field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Opcode {
    Rrq = 1,
    Wrq = 2,
    Data = 3,
    Ack = 4,
    Error = 5,
    Oack = 6,
}

impl Opcode {
    pub fn from_u16(v: u16) -> Option<Opcode> {
        Some(match v {
            1 => Opcode::Rrq,
            2 => Opcode::Wrq,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::Oack,
            _ => return None,
        })
    }
}

/// The transfer mode of a request. Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Netascii,
    Octet,
    /// Obsolete (RFC 1350); parsed so it can be refused with ERROR 4.
    Mail,
}

impl Mode {
    pub fn from_bytes(b: &[u8]) -> Option<Mode> {
        if b.eq_ignore_ascii_case(b"octet") {
            Some(Mode::Octet)
        } else if b.eq_ignore_ascii_case(b"netascii") {
            Some(Mode::Netascii)
        } else if b.eq_ignore_ascii_case(b"mail") {
            Some(Mode::Mail)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One option of a request or OACK, as raw bytes borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> RawOption<'a> {
    pub fn new(name: &'a str, value: &'a str) -> Self {
        RawOption {
            name: name.as_bytes(),
            value: value.as_bytes(),
        }
    }

    /// Option names are case-insensitive (RFC 2347).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub filename: &'a str,
    pub mode: Mode,
    pub options: Vec<RawOption<'a>>,
}

/// A parsed TFTP packet. Parsing borrows from the datagram; emitting writes
/// into the caller's buffer, so neither allocates for DATA.
///
/// ```
/// use tftplab::wire::{ErrorCode, Packet};
///
/// let rrq = b"\x00\x01start4.elf\x00octet\x00blksize\x001024\x00";
/// let Packet::Rrq(request) = Packet::parse(rrq)? else { panic!("an RRQ") };
/// assert_eq!((request.filename, request.options[0].value), ("start4.elf", &b"1024"[..]));
///
/// let mut buf = [0u8; 64];
/// let error = Packet::Error { code: ErrorCode::FILE_NOT_FOUND, message: "no such file" };
/// let len = error.emit(&mut buf)?;
/// assert_eq!(&buf[..len], b"\x00\x05\x00\x01no such file\x00");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request<'a>),
    Wrq(Request<'a>),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: ErrorCode, message: &'a str },
    Oack { options: Vec<RawOption<'a>> },
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet too short")]
    TooShort,
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("{0} is not NUL-terminated")]
    MissingNul(&'static str),
    #[error("empty filename")]
    EmptyFilename,
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("unknown transfer mode")]
    UnknownMode,
    #[error("more than {MAX_OPTIONS} options")]
    TooManyOptions,
}

impl ParseError {
    /// The ERROR code to answer this packet with.
    pub fn error_code(self) -> ErrorCode {
        match self {
            ParseError::TooManyOptions => ErrorCode::OPTION_NEGOTIATION,
            _ => ErrorCode::ILLEGAL_OPERATION,
        }
    }
}

/// The caller's buffer cannot hold the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer of {have} bytes cannot hold a {need}-byte packet")]
pub struct BufferTooSmall {
    pub need: usize,
    pub have: usize,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Splits off one NUL-terminated field. `None` if there is no NUL.
fn take_cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = b.iter().position(|&c| c == 0)?;
    Some((&b[..nul], &b[nul + 1..]))
}

/// Parses `name NUL value NUL` pairs. An empty name (NUL padding) or an
/// incomplete trailing pair ends the list: some firmware pads its requests.
fn parse_options(mut b: &[u8]) -> Result<Vec<RawOption<'_>>, ParseError> {
    let mut options = Vec::new();
    while let Some((name, rest)) = take_cstr(b) {
        if name.is_empty() {
            break;
        }
        let Some((value, rest)) = take_cstr(rest) else {
            break;
        };
        if options.len() == MAX_OPTIONS {
            return Err(ParseError::TooManyOptions);
        }
        options.push(RawOption { name, value });
        b = rest;
    }
    Ok(options)
}

fn parse_request(b: &[u8]) -> Result<Request<'_>, ParseError> {
    let (filename, rest) = take_cstr(b).ok_or(ParseError::MissingNul("filename"))?;
    let (mode, rest) = take_cstr(rest).ok_or(ParseError::MissingNul("mode"))?;
    if filename.is_empty() {
        return Err(ParseError::EmptyFilename);
    }
    let filename = std::str::from_utf8(filename).map_err(|_| ParseError::NotUtf8("filename"))?;
    let mode = Mode::from_bytes(mode).ok_or(ParseError::UnknownMode)?;
    let options = parse_options(rest)?;
    Ok(Request {
        filename,
        mode,
        options,
    })
}

/// The longest valid UTF-8 prefix: an ERROR message is informational, so a
/// bad byte shortens it rather than discarding the packet.
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

impl<'a> Packet<'a> {
    /// Parses one datagram. Never panics, whatever the input.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        if buf.len() < 2 {
            return Err(ParseError::TooShort);
        }
        let raw_opcode = be16(buf);
        let opcode = Opcode::from_u16(raw_opcode).ok_or(ParseError::UnknownOpcode(raw_opcode))?;
        let body = &buf[2..];
        Ok(match opcode {
            Opcode::Rrq => Packet::Rrq(parse_request(body)?),
            Opcode::Wrq => Packet::Wrq(parse_request(body)?),
            Opcode::Data | Opcode::Ack | Opcode::Error if body.len() < 2 => {
                return Err(ParseError::TooShort)
            }
            Opcode::Data => Packet::Data {
                block: be16(body),
                data: &body[2..],
            },
            Opcode::Ack => Packet::Ack { block: be16(body) },
            Opcode::Error => {
                let text = &body[2..];
                let text = take_cstr(text).map_or(text, |(m, _)| m);
                Packet::Error {
                    code: ErrorCode(be16(body)),
                    message: utf8_prefix(text),
                }
            }
            Opcode::Oack => Packet::Oack {
                options: parse_options(body)?,
            },
        })
    }

    pub fn opcode(&self) -> Opcode {
        match self {
            Packet::Rrq(_) => Opcode::Rrq,
            Packet::Wrq(_) => Opcode::Wrq,
            Packet::Data { .. } => Opcode::Data,
            Packet::Ack { .. } => Opcode::Ack,
            Packet::Error { .. } => Opcode::Error,
            Packet::Oack { .. } => Opcode::Oack,
        }
    }

    /// The number of bytes [`Packet::emit`] writes.
    pub fn emitted_len(&self) -> usize {
        let options_len =
            |o: &[RawOption]| -> usize { o.iter().map(|o| o.name.len() + o.value.len() + 2).sum() };
        2 + match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                r.filename.len() + 1 + r.mode.as_str().len() + 1 + options_len(&r.options)
            }
            Packet::Data { data, .. } => 2 + data.len(),
            Packet::Ack { .. } => 2,
            Packet::Error { message, .. } => 2 + message.len() + 1,
            Packet::Oack { options } => options_len(options),
        }
    }

    /// Writes the packet into `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let need = self.emitted_len();
        if buf.len() < need {
            return Err(BufferTooSmall {
                need,
                have: buf.len(),
            });
        }
        let mut w = Writer { buf, pos: 0 };
        w.u16(self.opcode() as u16);
        match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                w.cstr(r.filename.as_bytes());
                w.cstr(r.mode.as_str().as_bytes());
                w.options(&r.options);
            }
            Packet::Data { block, data } => {
                w.u16(*block);
                w.bytes(data);
            }
            Packet::Ack { block } => w.u16(*block),
            Packet::Error { code, message } => {
                w.u16(code.0);
                w.cstr(message.as_bytes());
            }
            Packet::Oack { options } => w.options(options),
        }
        debug_assert_eq!(w.pos, need);
        Ok(need)
    }
}

/// Sequential writer over a buffer already checked to be large enough.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn cstr(&mut self, b: &[u8]) {
        self.bytes(b);
        self.bytes(&[0]);
    }
    fn options(&mut self, options: &[RawOption]) {
        for o in options {
            self.cstr(o.name);
            self.cstr(o.value);
        }
    }
}

/// Writes a DATA header for `block` into `buf[..4]`; the payload goes at
/// `buf[4..]`. Lets a sender read file data straight into the datagram.
pub fn emit_data_header(buf: &mut [u8], block: u16) -> Result<(), BufferTooSmall> {
    if buf.len() < DATA_HEADER_LEN {
        return Err(BufferTooSmall {
            need: DATA_HEADER_LEN,
            have: buf.len(),
        });
    }
    buf[..2].copy_from_slice(&(Opcode::Data as u16).to_be_bytes());
    buf[2..4].copy_from_slice(&block.to_be_bytes());
    Ok(())
}

/// Writes an ACK and returns its length (4).
pub fn emit_ack(buf: &mut [u8], block: u16) -> Result<usize, BufferTooSmall> {
    Packet::Ack { block }.emit(buf)
}

/// Writes an ERROR, cutting the message (at a character boundary) to fit
/// the buffer rather than failing. Returns the length.
pub fn emit_error(buf: &mut [u8], code: ErrorCode, message: &str) -> Result<usize, BufferTooSmall> {
    let room = buf.len().saturating_sub(5);
    let mut end = message.len().min(room);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Packet::Error {
        code,
        message: &message[..end],
    }
    .emit(buf)
}

impl fmt::Display for RawOption<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}",
            String::from_utf8_lossy(self.name),
            String::from_utf8_lossy(self.value)
        )
    }
}

fn fmt_options(f: &mut fmt::Formatter<'_>, options: &[RawOption]) -> fmt::Result {
    for o in options {
        write!(f, " {o}")?;
    }
    Ok(())
}

/// One-line rendering used in packet traces.
impl fmt::Display for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                let op = if matches!(self, Packet::Rrq(_)) {
                    "RRQ"
                } else {
                    "WRQ"
                };
                write!(f, "{op} {:?} {}", r.filename, r.mode)?;
                fmt_options(f, &r.options)
            }
            Packet::Data { block, data } => write!(f, "DATA #{block} ({} B)", data.len()),
            Packet::Ack { block } => write!(f, "ACK #{block}"),
            Packet::Error { code, message } => write!(f, "ERROR {} {message:?}", code.0),
            Packet::Oack { options } => {
                f.write_str("OACK")?;
                fmt_options(f, options)
            }
        }
    }
}

#[cfg(test)]
mod tests;
