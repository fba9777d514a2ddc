//! Option negotiation: RFC 2347 (OACK), 2348 (blksize), 2349 (timeout,
//! tsize) and 7440 (windowsize).
//!
//! The server side ([`negotiate`]) is lenient where the RFCs allow it: an
//! unknown option, or a known one with a value it cannot use, is left out of
//! the OACK rather than failing the request. The client side
//! ([`OptionRequest::validate_oack`]) is as strict as U-Boot: an OACK that
//! answers an option never asked, raises blksize or windowsize, or changes the
//! timeout is a negotiation failure (ERROR 8).

use crate::wire::{
    BufferTooSmall, ErrorCode, Mode, Opcode, RawOption, Request, DEFAULT_BLKSIZE, MAX_BLKSIZE,
    MIN_BLKSIZE,
};
use std::io::Write;

/// The options tftplab understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    Blksize,
    Timeout,
    Tsize,
    Windowsize,
}

impl Opt {
    pub const ALL: [Opt; 4] = [Opt::Blksize, Opt::Timeout, Opt::Tsize, Opt::Windowsize];

    pub fn name(self) -> &'static str {
        match self {
            Opt::Blksize => "blksize",
            Opt::Timeout => "timeout",
            Opt::Tsize => "tsize",
            Opt::Windowsize => "windowsize",
        }
    }

    /// The option named `name` (any case), if tftplab knows it.
    pub fn from_name(name: &[u8]) -> Option<Opt> {
        Opt::ALL
            .into_iter()
            .find(|o| name.eq_ignore_ascii_case(o.name().as_bytes()))
    }
}

/// Parses a decimal option value: ASCII digits only, no sign, no spaces.
/// `None` for anything else, including overflow.
pub fn parse_number(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// The default cap on the `timeout` option: U-Boot asks for 5 s, and no
/// LAN needs a retransmission timer longer than this.
pub const DEFAULT_MAX_TIMEOUT: u8 = 30;

/// What the server allows; the negotiated values never exceed these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Upper bound for blksize (8..=65464).
    pub max_blksize: u16,
    /// Upper bound for windowsize (1..=65535).
    pub max_windowsize: u16,
    /// Largest upload accepted, checked against a WRQ's announced tsize.
    pub max_upload: Option<u64>,
    /// Largest `timeout` option accepted, in seconds. A larger one is left
    /// out of the OACK (the server keeps its own timer) rather than lowered:
    /// U-Boot refuses an OACK whose timeout differs from what it asked.
    /// Without a cap, `timeout 255` holds a transfer slot for half an hour
    /// of retries.
    pub max_timeout: u8,
    /// Options never granted, whatever the client asks (tftpd-hpa's `-r`):
    /// left out of the OACK, so the client runs with RFC 1350's value.
    /// Indexed by [`Opt`]; see [`Limits::refusing`].
    pub refused: [bool; 4],
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blksize: MAX_BLKSIZE,
            max_windowsize: 64,
            max_upload: None,
            max_timeout: DEFAULT_MAX_TIMEOUT,
            refused: [false; 4],
        }
    }
}

impl Limits {
    /// These limits, with `opt` never granted.
    pub fn refusing(mut self, opt: Opt) -> Self {
        self.refused[opt as usize] = true;
        self
    }

    pub fn refuses(&self, opt: Opt) -> bool {
        self.refused[opt as usize]
    }
}

/// The settings a transfer runs with, and which options the OACK carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// The negotiated retransmission timeout in seconds, if any.
    pub timeout: Option<u8>,
    /// RRQ: the file's size; WRQ: the size the client announced.
    pub tsize: Option<u64>,
    /// Accepted options in the order the client sent them.
    order: [Option<Opt>; 4],
}

impl Default for Negotiated {
    /// RFC 1350 behaviour: 512-byte blocks, lock-step, no OACK.
    fn default() -> Self {
        Negotiated {
            blksize: DEFAULT_BLKSIZE,
            windowsize: 1,
            timeout: None,
            tsize: None,
            order: [None; 4],
        }
    }
}

/// Why the server refuses a request's options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("option {0} given twice")]
    Duplicate(&'static str),
    #[error("announced size {announced} exceeds the limit of {limit} bytes")]
    TooLarge { announced: u64, limit: u64 },
}

impl NegotiationError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            NegotiationError::Duplicate(_) => ErrorCode::OPTION_NEGOTIATION,
            NegotiationError::TooLarge { .. } => ErrorCode::DISK_FULL,
        }
    }
}

/// Which way the data flows in the request being negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// RRQ: the server sends.
    Read,
    /// WRQ: the server receives.
    Write,
}

/// Server-side negotiation. `file_size` is the size to report for `tsize` in
/// a read (`None` when unknown, e.g. netascii, in which case tsize is left
/// out of the OACK; so is a size of 0, which curl refuses).
pub fn negotiate(
    req: &Request<'_>,
    direction: Direction,
    file_size: Option<u64>,
    limits: &Limits,
) -> Result<Negotiated, NegotiationError> {
    let mut n = Negotiated::default();
    let mut seen = [false; 4];
    let mut count = 0;
    for o in &req.options {
        let Some(opt) = Opt::from_name(o.name) else {
            continue; // RFC 2347: unknown options are ignored.
        };
        if std::mem::replace(&mut seen[opt as usize], true) {
            return Err(NegotiationError::Duplicate(opt.name()));
        }
        if limits.refuses(opt) {
            continue; // Left out of the OACK, as an unknown option is.
        }
        let value = parse_number(o.value);
        let accepted = match (opt, value) {
            (_, None) => false,
            (Opt::Blksize, Some(v)) if v >= u64::from(MIN_BLKSIZE) => {
                let cap = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
                n.blksize = v.min(u64::from(cap)) as u16;
                true
            }
            (Opt::Timeout, Some(v @ 1..=255)) if v <= u64::from(limits.max_timeout) => {
                n.timeout = Some(v as u8);
                true
            }
            (Opt::Tsize, Some(v)) => match direction {
                // Left out for an empty file: curl refuses an OACK that
                // carries `tsize 0`, and a server may drop any option.
                Direction::Read => {
                    n.tsize = file_size.filter(|&size| size > 0);
                    n.tsize.is_some()
                }
                Direction::Write => {
                    if let Some(limit) = limits.max_upload.filter(|&l| v > l) {
                        return Err(NegotiationError::TooLarge {
                            announced: v,
                            limit,
                        });
                    }
                    n.tsize = Some(v);
                    true
                }
            },
            (Opt::Windowsize, Some(v @ 1..=65535)) => {
                n.windowsize = (v as u16).min(limits.max_windowsize.max(1));
                true
            }
            _ => false,
        };
        if accepted {
            n.order[count] = Some(opt);
            count += 1;
        }
    }
    Ok(n)
}

impl Negotiated {
    /// True when the server must answer with an OACK (some option accepted).
    pub fn has_oack(&self) -> bool {
        self.order[0].is_some()
    }

    /// The accepted options, in the client's order.
    pub fn accepted(&self) -> impl Iterator<Item = Opt> + '_ {
        self.order.iter().map_while(|o| *o)
    }

    fn value(&self, opt: Opt) -> u64 {
        match opt {
            Opt::Blksize => self.blksize.into(),
            Opt::Timeout => self.timeout.unwrap_or(0).into(),
            Opt::Tsize => self.tsize.unwrap_or(0),
            Opt::Windowsize => self.windowsize.into(),
        }
    }

    /// Writes the OACK for the accepted options; returns its length.
    pub fn emit_oack(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let have = buf.len();
        let mut w = &mut buf[..];
        let res = (|| -> std::io::Result<()> {
            w.write_all(&(Opcode::Oack as u16).to_be_bytes())?;
            for opt in self.accepted() {
                write!(w, "{}\0{}\0", opt.name(), self.value(opt))?;
            }
            Ok(())
        })();
        let left = w.len();
        match res {
            Ok(()) => Ok(have - left),
            Err(_) => Err(BufferTooSmall {
                need: have + 1,
                have,
            }),
        }
    }
}

/// The options a client asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionRequest {
    pub blksize: Option<u16>,
    pub timeout: Option<u8>,
    /// For a read, normally `Some(0)` (ask the size); for a write, the size
    /// being sent.
    pub tsize: Option<u64>,
    pub windowsize: Option<u16>,
}

/// Why a client rejects an OACK (answered with ERROR 8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OackError {
    #[error("server answered option {0:?}, which was not requested")]
    NotRequested(String),
    #[error("server answered option {0} twice")]
    Duplicate(&'static str),
    #[error("server answered {opt} with unusable value {value:?}")]
    BadValue { opt: &'static str, value: String },
}

impl OptionRequest {
    pub fn is_empty(&self) -> bool {
        *self == OptionRequest::default()
    }

    fn requested(&self, opt: Opt) -> Option<u64> {
        match opt {
            Opt::Blksize => self.blksize.map(u64::from),
            Opt::Timeout => self.timeout.map(u64::from),
            Opt::Tsize => self.tsize,
            Opt::Windowsize => self.windowsize.map(u64::from),
        }
    }

    /// Writes an RRQ or WRQ carrying these options; returns its length.
    pub fn emit_request(
        &self,
        buf: &mut [u8],
        opcode: Opcode,
        filename: &str,
        mode: Mode,
    ) -> Result<usize, BufferTooSmall> {
        let have = buf.len();
        let mut w = &mut buf[..];
        let res = (|| -> std::io::Result<()> {
            w.write_all(&(opcode as u16).to_be_bytes())?;
            write!(w, "{filename}\0{mode}\0")?;
            for opt in Opt::ALL {
                if let Some(v) = self.requested(opt) {
                    write!(w, "{}\0{v}\0", opt.name())?;
                }
            }
            Ok(())
        })();
        let left = w.len();
        match res {
            Ok(()) => Ok(have - left),
            Err(_) => Err(BufferTooSmall {
                need: have + 1,
                have,
            }),
        }
    }

    /// Checks a server's OACK against this request the way U-Boot does, and
    /// returns the settings to use. Options asked for but not answered fall
    /// back to their RFC 1350 defaults.
    pub fn validate_oack(&self, options: &[RawOption<'_>]) -> Result<Negotiated, OackError> {
        let mut n = Negotiated::default();
        let mut seen = [false; 4];
        for (count, o) in options.iter().enumerate() {
            let opt = Opt::from_name(o.name)
                .filter(|&opt| self.requested(opt).is_some())
                .ok_or_else(|| OackError::NotRequested(o.to_string()))?;
            if std::mem::replace(&mut seen[opt as usize], true) {
                return Err(OackError::Duplicate(opt.name()));
            }
            let asked = self.requested(opt).unwrap_or(0);
            let bad = || OackError::BadValue {
                opt: opt.name(),
                value: String::from_utf8_lossy(o.value).into_owned(),
            };
            let v = parse_number(o.value).ok_or_else(bad)?;
            match opt {
                Opt::Blksize
                    if (u64::from(MIN_BLKSIZE)..=asked.min(u64::from(MAX_BLKSIZE)))
                        .contains(&v) =>
                {
                    n.blksize = v as u16
                }
                Opt::Windowsize if (1..=asked).contains(&v) => n.windowsize = v as u16,
                Opt::Timeout if v == asked => n.timeout = Some(v as u8),
                Opt::Tsize => n.tsize = Some(v),
                _ => return Err(bad()),
            }
            n.order[count] = Some(opt);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Packet;

    fn rrq(options: &[(&'static str, &'static str)]) -> Request<'static> {
        Request {
            filename: "f",
            mode: Mode::Octet,
            options: options.iter().map(|&(n, v)| RawOption::new(n, v)).collect(),
        }
    }

    fn oack_bytes(n: &Negotiated) -> Vec<u8> {
        let mut buf = [0u8; 128];
        let len = n.emit_oack(&mut buf).unwrap();
        buf[..len].to_vec()
    }

    #[test]
    fn rpi4_request_gets_size_and_blksize_in_its_order() {
        let req = rrq(&[("tsize", "0"), ("blksize", "1024")]);
        let n = negotiate(&req, Direction::Read, Some(2_228_224), &Limits::default()).unwrap();
        assert_eq!(
            (n.blksize, n.windowsize, n.tsize),
            (1024, 1, Some(2_228_224))
        );
        assert_eq!(
            oack_bytes(&n),
            b"\x00\x06tsize\x002228224\x00blksize\x001024\x00"
        );
    }

    #[test]
    fn uboot_timeout_is_echoed_exactly_and_window_capped() {
        let req = rrq(&[("timeout", "5"), ("blksize", "1468"), ("windowsize", "128")]);
        let n = negotiate(&req, Direction::Read, Some(1), &Limits::default()).unwrap();
        assert_eq!((n.timeout, n.blksize, n.windowsize), (Some(5), 1468, 64));
        assert_eq!(
            oack_bytes(&n),
            b"\x00\x06timeout\x005\x00blksize\x001468\x00windowsize\x0064\x00"
        );
    }

    #[test]
    fn blksize_is_never_above_the_request_and_capped_by_the_server() {
        let limits = Limits {
            max_blksize: 1468,
            ..Limits::default()
        };
        let n = |v| {
            negotiate(&rrq(&[("blksize", v)]), Direction::Read, None, &limits)
                .unwrap()
                .blksize
        };
        assert_eq!(n("1024"), 1024);
        assert_eq!(n("8"), 8);
        assert_eq!(n("9000"), 1468);
        assert_eq!(n("99999999999"), 1468);
        let unlimited = Limits::default();
        let big = negotiate(
            &rrq(&[("blksize", "70000")]),
            Direction::Read,
            None,
            &unlimited,
        );
        assert_eq!(big.unwrap().blksize, 65464);
    }

    #[test]
    fn invalid_values_are_left_out_of_the_oack() {
        for (name, value) in [
            ("blksize", "7"),
            ("blksize", "0"),
            ("blksize", "-1"),
            ("blksize", "12a"),
            ("blksize", ""),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", "x"),
        ] {
            let n = negotiate(
                &rrq(&[(name, value)]),
                Direction::Read,
                Some(5),
                &Limits::default(),
            )
            .unwrap();
            assert!(!n.has_oack(), "{name}={value} should be ignored");
            assert_eq!(n, Negotiated::default());
        }
    }

    #[test]
    fn unknown_options_are_ignored_and_no_options_means_no_oack() {
        let n = negotiate(
            &rrq(&[("multicast", ""), ("utimeout", "500")]),
            Direction::Read,
            Some(3),
            &Limits::default(),
        )
        .unwrap();
        assert!(!n.has_oack());
        let n = negotiate(&rrq(&[]), Direction::Read, Some(3), &Limits::default()).unwrap();
        assert!(!n.has_oack());
    }

    #[test]
    fn option_names_are_case_insensitive_and_oack_uses_lowercase() {
        let n = negotiate(
            &rrq(&[("BlkSize", "1024")]),
            Direction::Read,
            None,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(oack_bytes(&n), b"\x00\x06blksize\x001024\x00");
    }

    #[test]
    fn duplicate_known_option_is_refused_with_error_8() {
        let req = rrq(&[("blksize", "1024"), ("BLKSIZE", "512")]);
        let err = negotiate(&req, Direction::Read, None, &Limits::default()).unwrap_err();
        assert_eq!(err, NegotiationError::Duplicate("blksize"));
        assert_eq!(err.error_code(), ErrorCode::OPTION_NEGOTIATION);
    }

    #[test]
    fn read_tsize_reports_the_real_size_or_is_dropped_when_unknown() {
        let req = rrq(&[("tsize", "0")]);
        let known = negotiate(&req, Direction::Read, Some(3), &Limits::default()).unwrap();
        assert_eq!(oack_bytes(&known), b"\x00\x06tsize\x003\x00");
        let unknown = negotiate(&req, Direction::Read, None, &Limits::default()).unwrap();
        assert!(!unknown.has_oack());
    }

    #[test]
    fn tsize_is_left_out_for_an_empty_file() {
        // curl refuses an OACK carrying `tsize 0`; with nothing else
        // accepted there is no OACK at all and DATA 1 answers the request.
        let alone = negotiate(
            &rrq(&[("tsize", "0")]),
            Direction::Read,
            Some(0),
            &Limits::default(),
        );
        assert!(!alone.unwrap().has_oack());
        let req = rrq(&[("tsize", "0"), ("blksize", "1024")]);
        let n = negotiate(&req, Direction::Read, Some(0), &Limits::default()).unwrap();
        assert_eq!(oack_bytes(&n), b"\x00\x06blksize\x001024\x00");
    }

    #[test]
    fn a_timeout_above_the_cap_is_left_out_not_lowered() {
        let limits = Limits::default();
        assert_eq!(DEFAULT_MAX_TIMEOUT, 30);
        let n = negotiate(&rrq(&[("timeout", "30")]), Direction::Read, None, &limits);
        assert_eq!(n.unwrap().timeout, Some(30));
        let req = rrq(&[("timeout", "255"), ("blksize", "1468")]);
        let n = negotiate(&req, Direction::Read, None, &limits).unwrap();
        assert_eq!(n.timeout, None);
        assert_eq!(oack_bytes(&n), b"\x00\x06blksize\x001468\x00");
        let tight = Limits {
            max_timeout: 4,
            ..limits
        };
        let n = negotiate(&rrq(&[("timeout", "5")]), Direction::Read, None, &tight).unwrap();
        assert!(!n.has_oack());
    }

    #[test]
    fn a_refused_option_is_left_out_as_if_unknown() {
        let limits = Limits::default()
            .refusing(Opt::Windowsize)
            .refusing(Opt::Tsize);
        let req = rrq(&[("blksize", "1468"), ("windowsize", "16"), ("tsize", "0")]);
        let n = negotiate(&req, Direction::Read, Some(5000), &limits).unwrap();
        assert_eq!((n.blksize, n.windowsize, n.tsize), (1468, 1, None));
        assert_eq!(oack_bytes(&n), b"\x00\x06blksize\x001468\x00");
        // A refused option that is repeated is still a malformed request.
        let twice = rrq(&[("tsize", "0"), ("tsize", "0")]);
        assert!(negotiate(&twice, Direction::Read, None, &limits).is_err());
    }

    #[test]
    fn write_tsize_is_checked_against_the_upload_limit() {
        let limits = Limits {
            max_upload: Some(1000),
            ..Limits::default()
        };
        let ok = negotiate(&rrq(&[("tsize", "1000")]), Direction::Write, None, &limits).unwrap();
        assert_eq!(ok.tsize, Some(1000));
        let err =
            negotiate(&rrq(&[("tsize", "1001")]), Direction::Write, None, &limits).unwrap_err();
        assert_eq!(err.error_code(), ErrorCode::DISK_FULL);
    }

    #[test]
    fn oack_emit_into_small_buffer_fails_cleanly() {
        let n = negotiate(
            &rrq(&[("blksize", "1024")]),
            Direction::Read,
            None,
            &Limits::default(),
        )
        .unwrap();
        let mut buf = [0u8; 6];
        assert!(n.emit_oack(&mut buf).is_err());
    }

    #[test]
    fn request_emission_is_byte_exact_and_parses_back() {
        let req = OptionRequest {
            blksize: Some(1024),
            tsize: Some(0),
            ..OptionRequest::default()
        };
        let mut buf = [0u8; 64];
        let len = req
            .emit_request(&mut buf, Opcode::Rrq, "start4.elf", Mode::Octet)
            .unwrap();
        assert_eq!(
            &buf[..len],
            b"\x00\x01start4.elf\x00octet\x00blksize\x001024\x00tsize\x000\x00"
        );
        let Packet::Rrq(parsed) = Packet::parse(&buf[..len]).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(parsed.options.len(), 2);
        let mut small = [0u8; 10];
        assert!(req
            .emit_request(&mut small, Opcode::Rrq, "start4.elf", Mode::Octet)
            .is_err());
    }

    fn uboot() -> OptionRequest {
        OptionRequest {
            blksize: Some(1468),
            timeout: Some(5),
            tsize: Some(0),
            windowsize: Some(8),
        }
    }

    fn opts(pairs: &[(&'static str, &'static str)]) -> Vec<RawOption<'static>> {
        pairs.iter().map(|&(n, v)| RawOption::new(n, v)).collect()
    }

    #[test]
    fn client_accepts_an_oack_within_its_request() {
        let n = uboot()
            .validate_oack(&opts(&[
                ("blksize", "1024"),
                ("timeout", "5"),
                ("tsize", "77"),
                ("windowsize", "4"),
            ]))
            .unwrap();
        assert_eq!(
            (n.blksize, n.timeout, n.tsize, n.windowsize),
            (1024, Some(5), Some(77), 4)
        );
    }

    #[test]
    fn client_falls_back_to_defaults_for_unanswered_options() {
        let n = uboot().validate_oack(&opts(&[("tsize", "10")])).unwrap();
        assert_eq!((n.blksize, n.windowsize, n.timeout), (512, 1, None));
    }

    #[test]
    fn client_rejects_oacks_like_uboot() {
        for bad in [
            &[("blksize", "2000")][..],
            &[("blksize", "7")],
            &[("timeout", "6")],
            &[("windowsize", "9")],
            &[("windowsize", "0")],
            &[("tsize", "abc")],
            &[("multicast", "1")],
            &[("blksize", "1024"), ("blksize", "1024")],
        ] {
            assert!(
                uboot().validate_oack(&opts(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
        let legacy = OptionRequest::default();
        assert!(matches!(
            legacy.validate_oack(&opts(&[("blksize", "512")])),
            Err(OackError::NotRequested(_))
        ));
    }

    #[test]
    fn parse_number_accepts_digits_only() {
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"00512"), Some(512));
        assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number(b"18446744073709551616"), None);
        for bad in [&b""[..], b" 1", b"+1", b"1.0", b"0x10"] {
            assert_eq!(parse_number(bad), None);
        }
    }
}
