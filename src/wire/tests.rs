//! Tests for the packet codec, smoltcp style: every packet type has a literal
//! byte array that is parsed into the expected [`Packet`] and that the
//! expected [`Packet`] emits back, byte for byte.
//!
//! The fixtures are byte-string literals with the array length spelled out in
//! the type, so a miscounted fixture does not compile. `\x` takes exactly
//! two hex digits: `\x001024` is a NUL followed by the text `1024`. (A NUL
//! before a digit is written `\x00` rather than `\0`, which clippy flags
//! as octal-looking.)

use super::*;

/// Asserts that `bytes` is rejected with `err`, answered with ERROR `code`.
#[track_caller]
fn assert_parse_err(bytes: &[u8], err: ParseError, code: ErrorCode) {
    assert_eq!(Packet::parse(bytes), Err(err));
    assert_eq!(err.error_code(), code);
}

/// Emits `packet` into a buffer of exactly `emitted_len()` bytes and returns
/// the bytes written.
#[track_caller]
fn emit_exact(packet: &Packet) -> Vec<u8> {
    let mut buf = vec![0u8; packet.emitted_len()];
    let len = packet
        .emit(&mut buf)
        .expect("buffer of emitted_len() bytes");
    assert_eq!(len, buf.len());
    buf
}

/// Parses `bytes` as a request, whatever its opcode.
#[track_caller]
fn parse_request_packet(bytes: &[u8]) -> Request<'_> {
    match Packet::parse(bytes) {
        Ok(Packet::Rrq(r)) | Ok(Packet::Wrq(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Raspberry Pi 4 bootloader: `RRQ "start4.elf" octet tsize 0 blksize 1024`.
static RRQ_PI4_BYTES: [u8; 40] = *b"\x00\x01start4.elf\0octet\0tsize\x000\0blksize\x001024\0";

fn rrq_pi4_repr() -> Packet<'static> {
    Packet::Rrq(Request {
        filename: "start4.elf",
        mode: Mode::Octet,
        options: vec![
            RawOption::new("tsize", "0"),
            RawOption::new("blksize", "1024"),
        ],
    })
}

/// U-Boot: `RRQ "boot.scr.uimg" octet timeout 5 blksize 1468 windowsize 8`.
static RRQ_UBOOT_BYTES: [u8; 58] =
    *b"\x00\x01boot.scr.uimg\0octet\0timeout\x005\0blksize\x001468\0windowsize\x008\0";

fn rrq_uboot_repr() -> Packet<'static> {
    Packet::Rrq(Request {
        filename: "boot.scr.uimg",
        mode: Mode::Octet,
        options: vec![
            RawOption::new("timeout", "5"),
            RawOption::new("blksize", "1468"),
            RawOption::new("windowsize", "8"),
        ],
    })
}

/// UEFI PXE (EDK2) asks for the size first: `RRQ "grubx64.efi" octet tsize 0`.
static RRQ_UEFI_BYTES: [u8; 28] = *b"\x00\x01grubx64.efi\0octet\0tsize\x000\0";

fn rrq_uefi_repr() -> Packet<'static> {
    Packet::Rrq(Request {
        filename: "grubx64.efi",
        mode: Mode::Octet,
        options: vec![RawOption::new("tsize", "0")],
    })
}

/// A legacy RFC 1350 request without options: `RRQ "pxelinux.0" octet`.
static RRQ_LEGACY_BYTES: [u8; 19] = *b"\x00\x01pxelinux.0\0octet\0";

fn rrq_legacy_repr() -> Packet<'static> {
    Packet::Rrq(Request {
        filename: "pxelinux.0",
        mode: Mode::Octet,
        options: vec![],
    })
}

/// A legacy netascii upload: `WRQ "switch-confg" netascii`.
static WRQ_LEGACY_BYTES: [u8; 24] = *b"\x00\x02switch-confg\0netascii\0";

fn wrq_legacy_repr() -> Packet<'static> {
    Packet::Wrq(Request {
        filename: "switch-confg",
        mode: Mode::Netascii,
        options: vec![],
    })
}

/// An upload announcing its size (RFC 2349): `WRQ "firmware.bin" octet tsize 1048576`.
static WRQ_TSIZE_BYTES: [u8; 35] = *b"\x00\x02firmware.bin\0octet\0tsize\x001048576\0";

fn wrq_tsize_repr() -> Packet<'static> {
    Packet::Wrq(Request {
        filename: "firmware.bin",
        mode: Mode::Octet,
        options: vec![RawOption::new("tsize", "1048576")],
    })
}

/// The answer to the Pi 4: `OACK blksize 1024 tsize 2228224`.
static OACK_BYTES: [u8; 29] = *b"\x00\x06blksize\x001024\0tsize\x002228224\0";

fn oack_repr() -> Packet<'static> {
    Packet::Oack {
        options: vec![
            RawOption::new("blksize", "1024"),
            RawOption::new("tsize", "2228224"),
        ],
    }
}

/// `ERROR 1 "File not found"`.
static ERROR_BYTES: [u8; 19] = *b"\x00\x05\x00\x01File not found\0";

fn error_repr() -> Packet<'static> {
    Packet::Error {
        code: ErrorCode::FILE_NOT_FOUND,
        message: "File not found",
    }
}

/// The payload of [`DATA_BYTES`]: a one-block iPXE script.
static DATA_PAYLOAD: [u8; 16] = *b"#!ipxe\nautoboot\n";

/// `DATA #1` carrying [`DATA_PAYLOAD`].
static DATA_BYTES: [u8; 20] = *b"\x00\x03\x00\x01#!ipxe\nautoboot\n";

fn data_repr() -> Packet<'static> {
    Packet::Data {
        block: 1,
        data: &DATA_PAYLOAD,
    }
}

/// The empty last block of a 2228224-byte file sent in 1024-byte blocks:
/// 2176 full blocks, then `DATA #2177` (0x0881) with no payload.
static DATA_EMPTY_BYTES: [u8; 4] = [0x00, 0x03, 0x08, 0x81];

fn data_empty_repr() -> Packet<'static> {
    Packet::Data {
        block: 2177,
        data: &[],
    }
}

/// `ACK #0`: acknowledges a WRQ (or an OACK).
static ACK_0_BYTES: [u8; 4] = [0x00, 0x04, 0x00, 0x00];

/// `ACK #65535`: the last block number before a rollover.
static ACK_65535_BYTES: [u8; 4] = [0x00, 0x04, 0xff, 0xff];

// ---------------------------------------------------------------------------
// Parse and emit, every packet type
// ---------------------------------------------------------------------------

#[test]
fn test_parse_rrq_pi4() {
    assert_eq!(Packet::parse(&RRQ_PI4_BYTES), Ok(rrq_pi4_repr()));
}

#[test]
fn test_emit_rrq_pi4() {
    let packet = rrq_pi4_repr();
    assert_eq!(packet.emitted_len(), RRQ_PI4_BYTES.len());
    assert_eq!(emit_exact(&packet), RRQ_PI4_BYTES);
}

#[test]
fn test_parse_rrq_uboot() {
    assert_eq!(Packet::parse(&RRQ_UBOOT_BYTES), Ok(rrq_uboot_repr()));
}

#[test]
fn test_emit_rrq_uboot() {
    let packet = rrq_uboot_repr();
    assert_eq!(packet.emitted_len(), RRQ_UBOOT_BYTES.len());
    assert_eq!(emit_exact(&packet), RRQ_UBOOT_BYTES);
}

#[test]
fn test_parse_rrq_uefi() {
    assert_eq!(Packet::parse(&RRQ_UEFI_BYTES), Ok(rrq_uefi_repr()));
}

#[test]
fn test_emit_rrq_uefi() {
    let packet = rrq_uefi_repr();
    assert_eq!(packet.emitted_len(), RRQ_UEFI_BYTES.len());
    assert_eq!(emit_exact(&packet), RRQ_UEFI_BYTES);
}

#[test]
fn test_parse_rrq_legacy() {
    assert_eq!(Packet::parse(&RRQ_LEGACY_BYTES), Ok(rrq_legacy_repr()));
}

#[test]
fn test_emit_rrq_legacy() {
    let packet = rrq_legacy_repr();
    assert_eq!(packet.emitted_len(), RRQ_LEGACY_BYTES.len());
    assert_eq!(emit_exact(&packet), RRQ_LEGACY_BYTES);
}

#[test]
fn test_parse_wrq_legacy() {
    assert_eq!(Packet::parse(&WRQ_LEGACY_BYTES), Ok(wrq_legacy_repr()));
}

#[test]
fn test_emit_wrq_legacy() {
    let packet = wrq_legacy_repr();
    assert_eq!(packet.emitted_len(), WRQ_LEGACY_BYTES.len());
    assert_eq!(emit_exact(&packet), WRQ_LEGACY_BYTES);
}

#[test]
fn test_parse_wrq_tsize() {
    assert_eq!(Packet::parse(&WRQ_TSIZE_BYTES), Ok(wrq_tsize_repr()));
}

#[test]
fn test_emit_wrq_tsize() {
    let packet = wrq_tsize_repr();
    assert_eq!(packet.emitted_len(), WRQ_TSIZE_BYTES.len());
    assert_eq!(emit_exact(&packet), WRQ_TSIZE_BYTES);
}

#[test]
fn test_parse_oack() {
    assert_eq!(Packet::parse(&OACK_BYTES), Ok(oack_repr()));
}

#[test]
fn test_emit_oack() {
    let packet = oack_repr();
    assert_eq!(packet.emitted_len(), OACK_BYTES.len());
    assert_eq!(emit_exact(&packet), OACK_BYTES);
}

#[test]
fn test_parse_oack_empty() {
    assert_eq!(
        Packet::parse(&[0x00, 0x06]),
        Ok(Packet::Oack { options: vec![] })
    );
}

#[test]
fn test_emit_oack_empty() {
    let packet = Packet::Oack { options: vec![] };
    assert_eq!(packet.emitted_len(), 2);
    assert_eq!(emit_exact(&packet), [0x00, 0x06]);
}

#[test]
fn test_parse_error() {
    assert_eq!(Packet::parse(&ERROR_BYTES), Ok(error_repr()));
}

#[test]
fn test_emit_error() {
    let packet = error_repr();
    assert_eq!(packet.emitted_len(), ERROR_BYTES.len());
    assert_eq!(emit_exact(&packet), ERROR_BYTES);
}

#[test]
fn test_parse_error_empty_message() {
    assert_eq!(
        Packet::parse(&[0x00, 0x05, 0x00, 0x00, 0x00]),
        Ok(Packet::Error {
            code: ErrorCode::UNDEFINED,
            message: "",
        })
    );
}

#[test]
fn test_emit_error_empty_message() {
    let packet = Packet::Error {
        code: ErrorCode::UNDEFINED,
        message: "",
    };
    assert_eq!(packet.emitted_len(), 5);
    assert_eq!(emit_exact(&packet), [0x00, 0x05, 0x00, 0x00, 0x00]);
}

#[test]
fn test_parse_error_ignores_bytes_after_nul() {
    assert_eq!(
        Packet::parse(b"\x00\x05\x00\x01File not found\0\xff\xfe junk"),
        Ok(error_repr())
    );
}

#[test]
fn test_parse_data() {
    assert_eq!(Packet::parse(&DATA_BYTES), Ok(data_repr()));
}

#[test]
fn test_emit_data() {
    let packet = data_repr();
    assert_eq!(packet.emitted_len(), DATA_BYTES.len());
    assert_eq!(emit_exact(&packet), DATA_BYTES);
}

#[test]
fn test_parse_data_empty() {
    assert_eq!(Packet::parse(&DATA_EMPTY_BYTES), Ok(data_empty_repr()));
}

#[test]
fn test_emit_data_empty() {
    let packet = data_empty_repr();
    assert_eq!(packet.emitted_len(), 4);
    assert_eq!(emit_exact(&packet), DATA_EMPTY_BYTES);
}

#[test]
fn test_parse_ack_0() {
    assert_eq!(Packet::parse(&ACK_0_BYTES), Ok(Packet::Ack { block: 0 }));
}

#[test]
fn test_emit_ack_0() {
    let packet = Packet::Ack { block: 0 };
    assert_eq!(packet.emitted_len(), 4);
    assert_eq!(emit_exact(&packet), ACK_0_BYTES);
}

#[test]
fn test_parse_ack_65535() {
    assert_eq!(
        Packet::parse(&ACK_65535_BYTES),
        Ok(Packet::Ack { block: 65535 })
    );
}

#[test]
fn test_emit_ack_65535() {
    let packet = Packet::Ack { block: 65535 };
    assert_eq!(packet.emitted_len(), 4);
    assert_eq!(emit_exact(&packet), ACK_65535_BYTES);
}

#[test]
fn test_emit_into_larger_buffer_leaves_the_rest_alone() {
    let mut buf = [0xa5u8; 64];
    let len = rrq_pi4_repr().emit(&mut buf).unwrap();
    assert_eq!(len, RRQ_PI4_BYTES.len());
    assert_eq!(buf[..len], RRQ_PI4_BYTES);
    assert!(buf[len..].iter().all(|&b| b == 0xa5));
}

#[test]
fn test_opcode() {
    assert_eq!(rrq_pi4_repr().opcode(), Opcode::Rrq);
    assert_eq!(wrq_legacy_repr().opcode(), Opcode::Wrq);
    assert_eq!(data_repr().opcode(), Opcode::Data);
    assert_eq!(Packet::Ack { block: 0 }.opcode(), Opcode::Ack);
    assert_eq!(error_repr().opcode(), Opcode::Error);
    assert_eq!(oack_repr().opcode(), Opcode::Oack);
    for v in 1..=6 {
        assert_eq!(Opcode::from_u16(v).map(|o| o as u16), Some(v));
    }
    assert_eq!(Opcode::from_u16(0), None);
    assert_eq!(Opcode::from_u16(7), None);
}

// ---------------------------------------------------------------------------
// The edge-case table of the module documentation, row by row
// ---------------------------------------------------------------------------

// Row: fewer than 2 bytes, or DATA/ACK/ERROR under 4 -> TooShort (ERROR 4).

#[test]
fn test_parse_empty_datagram() {
    assert_parse_err(&[], ParseError::TooShort, ErrorCode::ILLEGAL_OPERATION);
}

#[test]
fn test_parse_one_byte() {
    assert_parse_err(&[0x00], ParseError::TooShort, ErrorCode::ILLEGAL_OPERATION);
}

/// The shape of atftpd's CVE-2019-11365: an ERROR cut inside its code.
#[test]
fn test_parse_error_3_bytes() {
    assert_parse_err(
        &[0x00, 0x05, 0x00],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_error_opcode_only() {
    assert_parse_err(
        &[0x00, 0x05],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_data_3_bytes() {
    assert_parse_err(
        &[0x00, 0x03, 0x00],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_data_opcode_only() {
    assert_parse_err(
        &[0x00, 0x03],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_ack_3_bytes() {
    assert_parse_err(
        &[0x00, 0x04, 0x00],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_ack_opcode_only() {
    assert_parse_err(
        &[0x00, 0x04],
        ParseError::TooShort,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: opcode outside 1..=6 -> UnknownOpcode (ERROR 4).

#[test]
fn test_parse_opcode_0() {
    assert_parse_err(
        b"\x00\x00start4.elf\0octet\0",
        ParseError::UnknownOpcode(0),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_opcode_7() {
    assert_parse_err(
        &[0x00, 0x07, 0x00, 0x01],
        ParseError::UnknownOpcode(7),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_opcode_0xffff() {
    assert_parse_err(
        &[0xff, 0xff],
        ParseError::UnknownOpcode(0xffff),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

/// The opcode is big-endian: `01 00` is 256, not RRQ.
#[test]
fn test_parse_opcode_little_endian_rrq() {
    assert_parse_err(
        b"\x01\x00start4.elf\0octet\0",
        ParseError::UnknownOpcode(256),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: filename or mode without its NUL -> MissingNul (ERROR 4).

#[test]
fn test_parse_filename_without_nul() {
    assert_parse_err(
        b"\x00\x01start4.elf",
        ParseError::MissingNul("filename"),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_request_opcode_only() {
    assert_parse_err(
        &[0x00, 0x01],
        ParseError::MissingNul("filename"),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_mode_without_nul() {
    assert_parse_err(
        b"\x00\x01start4.elf\0octet",
        ParseError::MissingNul("mode"),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_wrq_mode_missing() {
    assert_parse_err(
        b"\x00\x02switch-confg\0",
        ParseError::MissingNul("mode"),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: empty filename -> EmptyFilename (ERROR 4).

#[test]
fn test_parse_empty_filename() {
    assert_parse_err(
        b"\x00\x01\0octet\0",
        ParseError::EmptyFilename,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: filename or mode not UTF-8 -> NotUtf8 (ERROR 4).

#[test]
fn test_parse_filename_not_utf8() {
    // 0xe9 is 'é' in Latin-1, invalid on its own in UTF-8.
    assert_parse_err(
        b"\x00\x01caf\xe9.bin\0octet\0",
        ParseError::NotUtf8("filename"),
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_filename_utf8() {
    let request = parse_request_packet("\x00\x01café/ファイル.bin\0octet\0".as_bytes());
    assert_eq!(request.filename, "café/ファイル.bin");
}

/// A mode is compared byte-wise against the three known names, so a
/// non-UTF-8 mode is simply an unknown one.
#[test]
fn test_parse_mode_not_utf8() {
    assert_parse_err(
        b"\x00\x01start4.elf\0oct\xffet\0",
        ParseError::UnknownMode,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: mode other than netascii/octet/mail (any case) -> UnknownMode (ERROR 4).

#[test]
fn test_parse_mode_octet_mixed_case() {
    let request = parse_request_packet(b"\x00\x01start4.elf\0OcTeT\0");
    assert_eq!(request.mode, Mode::Octet);
}

#[test]
fn test_parse_mode_netascii_upper_case() {
    let request = parse_request_packet(b"\x00\x02switch-confg\0NETASCII\0");
    assert_eq!(request.mode, Mode::Netascii);
}

#[test]
fn test_emit_mode_is_lower_case() {
    // What was parsed from "OcTeT" is emitted as "octet".
    let packet = Packet::parse(b"\x00\x01pxelinux.0\0OcTeT\0").unwrap();
    assert_eq!(emit_exact(&packet), RRQ_LEGACY_BYTES);
}

#[test]
fn test_parse_mode_binary() {
    assert_parse_err(
        b"\x00\x01start4.elf\0binary\0",
        ParseError::UnknownMode,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_mode_empty() {
    assert_parse_err(
        b"\x00\x01start4.elf\0\0",
        ParseError::UnknownMode,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

#[test]
fn test_parse_mode_octet_with_trailing_space() {
    assert_parse_err(
        b"\x00\x01start4.elf\0octet \0",
        ParseError::UnknownMode,
        ErrorCode::ILLEGAL_OPERATION,
    );
}

// Row: `mail` mode -> parses as Mode::Mail.

#[test]
fn test_parse_mode_mail() {
    assert_eq!(
        Packet::parse(b"\x00\x02root\0mail\0"),
        Ok(Packet::Wrq(Request {
            filename: "root",
            mode: Mode::Mail,
            options: vec![],
        }))
    );
}

#[test]
fn test_parse_mode_mail_upper_case() {
    let request = parse_request_packet(b"\x00\x02root\0MAIL\0");
    assert_eq!(request.mode, Mode::Mail);
}

// Row: bytes after the last option's NUL (NUL padding, or a trailing fragment
// without its NUL) -> ignored.

#[test]
fn test_parse_nul_padding_after_options() {
    let mut bytes = RRQ_PI4_BYTES.to_vec();
    bytes.extend_from_slice(&[0u8; 20]);
    assert_eq!(Packet::parse(&bytes), Ok(rrq_pi4_repr()));
}

#[test]
fn test_parse_nul_padding_after_mode() {
    let mut bytes = RRQ_LEGACY_BYTES.to_vec();
    bytes.extend_from_slice(&[0u8; 20]);
    assert_eq!(Packet::parse(&bytes), Ok(rrq_legacy_repr()));
}

#[test]
fn test_parse_nul_padding_after_oack_options() {
    let mut bytes = OACK_BYTES.to_vec();
    bytes.extend_from_slice(&[0u8; 20]);
    assert_eq!(Packet::parse(&bytes), Ok(oack_repr()));
}

/// An empty name ends the list, even if an option follows the padding.
#[test]
fn test_parse_option_after_nul_padding_ignored() {
    let request =
        parse_request_packet(b"\x00\x01start4.elf\0octet\0tsize\x000\0\0blksize\x001024\0");
    assert_eq!(request.options, [RawOption::new("tsize", "0")]);
}

#[test]
fn test_parse_trailing_option_name_without_value() {
    let mut bytes = RRQ_PI4_BYTES.to_vec();
    bytes.extend_from_slice(b"windowsize\0");
    assert_eq!(Packet::parse(&bytes), Ok(rrq_pi4_repr()));
}

#[test]
fn test_parse_trailing_option_name_without_nul() {
    let mut bytes = RRQ_PI4_BYTES.to_vec();
    bytes.extend_from_slice(b"windowsize");
    assert_eq!(Packet::parse(&bytes), Ok(rrq_pi4_repr()));
}

#[test]
fn test_parse_trailing_option_value_without_nul() {
    let mut bytes = RRQ_PI4_BYTES.to_vec();
    bytes.extend_from_slice(b"windowsize\x008");
    assert_eq!(Packet::parse(&bytes), Ok(rrq_pi4_repr()));
}

#[test]
fn test_parse_oack_trailing_value_without_nul() {
    let mut bytes = OACK_BYTES.to_vec();
    bytes.extend_from_slice(b"timeout\x005");
    assert_eq!(Packet::parse(&bytes), Ok(oack_repr()));
}

// Option names are case-insensitive and kept as sent.

#[test]
fn test_parse_option_names_mixed_case() {
    let request = parse_request_packet(b"\x00\x01start4.elf\0octet\0TSize\x000\0BLKSIZE\x001024\0");
    assert_eq!(
        request.options,
        [
            RawOption::new("TSize", "0"),
            RawOption::new("BLKSIZE", "1024")
        ]
    );
    assert!(request.options[0].is("tsize"));
    assert!(request.options[0].is("TSIZE"));
    assert!(!request.options[0].is("blksize"));
    assert!(request.options[1].is("blksize"));
    assert!(request.options[1].is("BlkSize"));
    assert!(!request.options[1].is("blksiz"));
    assert!(!request.options[1].is("blksize2"));
}

#[test]
fn test_raw_option_is() {
    let option = RawOption::new("WindowSize", "8");
    assert!(option.is("windowsize"));
    assert!(option.is("WINDOWSIZE"));
    assert!(!option.is("window"));
    assert!(!option.is(""));
    assert!(!RawOption {
        name: b"blksize\xff",
        value: b""
    }
    .is("blksize"));
}

// Row: more than MAX_OPTIONS options -> TooManyOptions (ERROR 8).

/// A request for "f" carrying `n` options `o0=0`, `o1=1`, ...
fn request_with_options(n: usize) -> Vec<u8> {
    let mut bytes = b"\x00\x01f\0octet\0".to_vec();
    for i in 0..n {
        bytes.extend_from_slice(format!("o{i}\0{i}\0").as_bytes());
    }
    bytes
}

#[test]
fn test_parse_33_options() {
    assert_eq!(MAX_OPTIONS, 32);
    assert_parse_err(
        &request_with_options(33),
        ParseError::TooManyOptions,
        ErrorCode::OPTION_NEGOTIATION,
    );
}

#[test]
fn test_parse_32_options() {
    let bytes = request_with_options(32);
    let request = parse_request_packet(&bytes);
    assert_eq!(request.options.len(), 32);
    for (i, option) in request.options.iter().enumerate() {
        assert_eq!(option.name, format!("o{i}").as_bytes());
        assert_eq!(option.value, i.to_string().as_bytes());
    }
}

/// A trailing fragment is not an option, so it does not count towards the limit.
#[test]
fn test_parse_32_options_and_trailing_fragment() {
    let mut bytes = request_with_options(32);
    bytes.extend_from_slice(b"o32\0");
    assert_eq!(parse_request_packet(&bytes).options.len(), 32);
}

#[test]
fn test_parse_oack_33_options() {
    let mut bytes = vec![0x00, 0x06];
    bytes.extend_from_slice(&request_with_options(33)[b"\x00\x01f\0octet\0".len()..]);
    assert_parse_err(
        &bytes,
        ParseError::TooManyOptions,
        ErrorCode::OPTION_NEGOTIATION,
    );
}

// Row: the same option twice -> kept (in order).

#[test]
fn test_parse_duplicate_options() {
    let request = parse_request_packet(
        b"\x00\x01start4.elf\0octet\0blksize\x001024\0tsize\x000\0blksize\x00512\0",
    );
    assert_eq!(
        request.options,
        [
            RawOption::new("blksize", "1024"),
            RawOption::new("tsize", "0"),
            RawOption::new("blksize", "512"),
        ]
    );
}

// Row: option names and values are raw bytes.

#[test]
fn test_parse_option_not_utf8() {
    let bytes = b"\x00\x01start4.elf\0octet\0x-vendor\xff\0\xfe\x80\0tsize\x000\0";
    let request = parse_request_packet(bytes);
    assert_eq!(
        request.options,
        [
            RawOption {
                name: b"x-vendor\xff",
                value: b"\xfe\x80",
            },
            RawOption::new("tsize", "0"),
        ]
    );
    // And they go back out unchanged.
    assert_eq!(emit_exact(&Packet::parse(bytes).unwrap()), bytes);
}

#[test]
fn test_parse_option_empty_value() {
    let request = parse_request_packet(b"\x00\x01start4.elf\0octet\0tsize\0\0");
    assert_eq!(request.options, [RawOption::new("tsize", "")]);
}

// Row: ERROR message without its NUL, or not UTF-8 -> accepted; the message
// is cut at the first invalid byte.

#[test]
fn test_parse_error_without_nul() {
    assert_eq!(
        Packet::parse(b"\x00\x05\x00\x01File not found"),
        Ok(error_repr())
    );
}

#[test]
fn test_parse_error_code_only() {
    assert_eq!(
        Packet::parse(&[0x00, 0x05, 0x00, 0x08]),
        Ok(Packet::Error {
            code: ErrorCode::OPTION_NEGOTIATION,
            message: "",
        })
    );
}

#[test]
fn test_parse_error_invalid_utf8_in_middle() {
    assert_eq!(
        Packet::parse(b"\x00\x05\x00\x03Disk \xff full\0"),
        Ok(Packet::Error {
            code: ErrorCode::DISK_FULL,
            message: "Disk ",
        })
    );
}

/// A multi-byte character cut short is dropped whole.
#[test]
fn test_parse_error_truncated_multibyte_char() {
    // "größe" with the 'ö' (c3 b6) cut after its first byte, no NUL.
    assert_eq!(
        Packet::parse(b"\x00\x05\x00\x03gr\xc3"),
        Ok(Packet::Error {
            code: ErrorCode::DISK_FULL,
            message: "gr",
        })
    );
}

#[test]
fn test_parse_error_utf8_message() {
    assert_eq!(
        Packet::parse("\x00\x05\x00\x01Datei nicht gefunden: größe.bin\0".as_bytes()),
        Ok(Packet::Error {
            code: ErrorCode::FILE_NOT_FOUND,
            message: "Datei nicht gefunden: größe.bin",
        })
    );
}

#[test]
fn test_parse_error_unknown_code() {
    assert_eq!(
        Packet::parse(b"\x00\x05\xbe\xefx\0"),
        Ok(Packet::Error {
            code: ErrorCode(0xbeef),
            message: "x",
        })
    );
}

// Row: ACK with bytes after the block number -> accepted, extra ignored.

#[test]
fn test_parse_ack_trailing_bytes() {
    assert_eq!(
        Packet::parse(b"\x00\x04\x00\x07garbage\0\0"),
        Ok(Packet::Ack { block: 7 })
    );
}

// DATA borrows its payload from the datagram.

#[test]
fn test_parse_data_borrows_payload() {
    let Ok(Packet::Data { block, data }) = Packet::parse(&DATA_BYTES) else {
        panic!("not DATA");
    };
    assert_eq!(block, 1);
    assert_eq!(data, DATA_PAYLOAD);
    let input = DATA_BYTES.as_ptr_range();
    let payload = data.as_ptr_range();
    assert!(input.start <= payload.start && payload.end <= input.end);
    assert_eq!(payload.start, DATA_BYTES[4..].as_ptr());
}

#[test]
fn test_parse_data_full_block() {
    let mut bytes = vec![0x00, 0x03, 0x12, 0x34];
    bytes.extend((0..1024u32).map(|i| i as u8));
    let Ok(Packet::Data { block, data }) = Packet::parse(&bytes) else {
        panic!("not DATA");
    };
    assert_eq!(block, 0x1234);
    assert_eq!(data.len(), 1024);
    assert_eq!(data, &bytes[4..]);
    assert_eq!(data.as_ptr(), bytes[4..].as_ptr());
}

// ParseError -> ERROR code, every variant.

#[test]
fn test_parse_error_codes() {
    for err in [
        ParseError::TooShort,
        ParseError::UnknownOpcode(9),
        ParseError::MissingNul("filename"),
        ParseError::MissingNul("mode"),
        ParseError::EmptyFilename,
        ParseError::NotUtf8("filename"),
        ParseError::UnknownMode,
    ] {
        assert_eq!(err.error_code(), ErrorCode::ILLEGAL_OPERATION, "{err:?}");
    }
    assert_eq!(
        ParseError::TooManyOptions.error_code(),
        ErrorCode::OPTION_NEGOTIATION
    );
}

// ---------------------------------------------------------------------------
// Emit into small buffers; the data-path helpers
// ---------------------------------------------------------------------------

/// Every emit into a buffer one byte short (and into an empty buffer) fails
/// with the right sizes instead of panicking.
#[test]
fn test_emit_buffer_too_small() {
    let packets = [
        rrq_pi4_repr(),
        rrq_uboot_repr(),
        rrq_legacy_repr(),
        wrq_legacy_repr(),
        wrq_tsize_repr(),
        data_repr(),
        data_empty_repr(),
        Packet::Ack { block: 0 },
        error_repr(),
        oack_repr(),
        Packet::Oack { options: vec![] },
    ];
    for packet in &packets {
        let need = packet.emitted_len();
        for have in [0, 1, need - 1] {
            let mut buf = vec![0u8; have];
            assert_eq!(
                packet.emit(&mut buf),
                Err(BufferTooSmall { need, have }),
                "{packet}"
            );
        }
    }
}

#[test]
fn test_buffer_too_small_display() {
    assert_eq!(
        BufferTooSmall { need: 40, have: 39 }.to_string(),
        "buffer of 39 bytes cannot hold a 40-byte packet"
    );
}

#[test]
fn test_emit_data_header() {
    let mut buf = [0u8; DATA_HEADER_LEN + 16];
    emit_data_header(&mut buf, 1).unwrap();
    buf[DATA_HEADER_LEN..].copy_from_slice(&DATA_PAYLOAD);
    assert_eq!(buf, DATA_BYTES);
    assert_eq!(Packet::parse(&buf), Ok(data_repr()));
}

#[test]
fn test_emit_data_header_only() {
    let mut buf = [0xa5u8; 4];
    emit_data_header(&mut buf, 2177).unwrap();
    assert_eq!(buf, DATA_EMPTY_BYTES);
    assert_eq!(Packet::parse(&buf), Ok(data_empty_repr()));
}

#[test]
fn test_emit_data_header_leaves_payload_alone() {
    let mut buf = [0xa5u8; 8];
    emit_data_header(&mut buf, 0xffff).unwrap();
    assert_eq!(buf, [0x00, 0x03, 0xff, 0xff, 0xa5, 0xa5, 0xa5, 0xa5]);
}

#[test]
fn test_emit_data_header_buffer_too_small() {
    for have in 0..DATA_HEADER_LEN {
        let mut buf = vec![0u8; have];
        assert_eq!(
            emit_data_header(&mut buf, 1),
            Err(BufferTooSmall { need: 4, have })
        );
    }
}

#[test]
fn test_emit_ack_helper() {
    let mut buf = [0u8; 4];
    assert_eq!(emit_ack(&mut buf, 0), Ok(4));
    assert_eq!(buf, ACK_0_BYTES);
    assert_eq!(emit_ack(&mut buf, 65535), Ok(4));
    assert_eq!(buf, ACK_65535_BYTES);
    assert_eq!(Packet::parse(&buf), Ok(Packet::Ack { block: 65535 }));
}

#[test]
fn test_emit_ack_helper_larger_buffer() {
    let mut buf = [0xa5u8; 8];
    assert_eq!(emit_ack(&mut buf, 7), Ok(4));
    assert_eq!(buf, [0x00, 0x04, 0x00, 0x07, 0xa5, 0xa5, 0xa5, 0xa5]);
}

#[test]
fn test_emit_ack_helper_buffer_too_small() {
    for have in 0..4 {
        let mut buf = vec![0u8; have];
        assert_eq!(emit_ack(&mut buf, 1), Err(BufferTooSmall { need: 4, have }));
    }
}

#[test]
fn test_emit_error_helper_fits() {
    let mut buf = [0u8; 64];
    let len = emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, "File not found").unwrap();
    assert_eq!(len, ERROR_BYTES.len());
    assert_eq!(buf[..len], ERROR_BYTES);
}

#[test]
fn test_emit_error_helper_exact_fit() {
    let mut buf = [0u8; 19];
    assert_eq!(
        emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, "File not found"),
        Ok(19)
    );
    assert_eq!(buf, ERROR_BYTES);
}

#[test]
fn test_emit_error_helper_truncates_ascii() {
    let mut buf = [0u8; 9];
    assert_eq!(
        emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, "File not found"),
        Ok(9)
    );
    assert_eq!(buf, *b"\x00\x05\x00\x01File\0");
}

/// The cut falls inside the 2-byte 'ß': the whole character is dropped.
#[test]
fn test_emit_error_helper_truncates_at_char_boundary_2_byte() {
    // "Dateigröße": 'ö' is bytes 7..9, 'ß' is bytes 9..11.
    let message = "Dateigröße zu groß";
    let mut buf = [0xa5u8; 4 + 10 + 1];
    let len = emit_error(&mut buf, ErrorCode::DISK_FULL, message).unwrap();
    assert_eq!(len, 4 + 9 + 1);
    assert_eq!(buf[..len], *"\x00\x05\x00\x03Dateigrö\0".as_bytes());
    assert_eq!(
        Packet::parse(&buf[..len]),
        Ok(Packet::Error {
            code: ErrorCode::DISK_FULL,
            message: "Dateigrö",
        })
    );
}

/// A cut at a 4-byte character, or 1, 2 or 3 bytes into it, drops it whole.
#[test]
fn test_emit_error_helper_truncates_at_char_boundary_4_byte() {
    // "File " is bytes 0..5, U+1F4C1 (f0 9f 93 81) is bytes 5..9.
    let message = "File \u{1F4C1} missing";
    for room in 5..9 {
        let mut buf = vec![0u8; 4 + room + 1];
        let len = emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, message).unwrap();
        assert_eq!(len, 4 + 5 + 1, "room {room}");
        assert_eq!(
            Packet::parse(&buf[..len]),
            Ok(Packet::Error {
                code: ErrorCode::FILE_NOT_FOUND,
                message: "File ",
            })
        );
    }
    let mut buf = vec![0u8; 4 + 9 + 1];
    let len = emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, message).unwrap();
    assert_eq!(len, buf.len());
    assert_eq!(
        Packet::parse(&buf),
        Ok(Packet::Error {
            code: ErrorCode::FILE_NOT_FOUND,
            message: "File \u{1F4C1}",
        })
    );
}

#[test]
fn test_emit_error_helper_no_room_for_message() {
    let mut buf = [0xa5u8; 5];
    assert_eq!(
        emit_error(&mut buf, ErrorCode::UNKNOWN_TID, "Unknown transfer ID"),
        Ok(5)
    );
    assert_eq!(buf, [0x00, 0x05, 0x00, 0x05, 0x00]);
}

#[test]
fn test_emit_error_helper_buffer_too_small() {
    for have in 0..5 {
        let mut buf = vec![0u8; have];
        assert_eq!(
            emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, "File not found"),
            Err(BufferTooSmall { need: 5, have })
        );
        assert_eq!(
            emit_error(&mut buf, ErrorCode::FILE_NOT_FOUND, ""),
            Err(BufferTooSmall { need: 5, have })
        );
    }
}

// ---------------------------------------------------------------------------
// Display (packet traces)
// ---------------------------------------------------------------------------

#[test]
fn test_display_rrq() {
    assert_eq!(
        rrq_pi4_repr().to_string(),
        r#"RRQ "start4.elf" octet tsize=0 blksize=1024"#
    );
    assert_eq!(
        rrq_uboot_repr().to_string(),
        r#"RRQ "boot.scr.uimg" octet timeout=5 blksize=1468 windowsize=8"#
    );
    assert_eq!(rrq_legacy_repr().to_string(), r#"RRQ "pxelinux.0" octet"#);
}

#[test]
fn test_display_wrq() {
    assert_eq!(
        wrq_legacy_repr().to_string(),
        r#"WRQ "switch-confg" netascii"#
    );
    assert_eq!(
        wrq_tsize_repr().to_string(),
        r#"WRQ "firmware.bin" octet tsize=1048576"#
    );
    let mail = Packet::Wrq(Request {
        filename: "root",
        mode: Mode::Mail,
        options: vec![],
    });
    assert_eq!(mail.to_string(), r#"WRQ "root" mail"#);
}

/// The filename is quoted with Rust escapes, so a hostile name cannot forge
/// a trace line.
#[test]
fn test_display_rrq_escapes_filename() {
    let packet = Packet::Rrq(Request {
        filename: "a\"b\nc",
        mode: Mode::Octet,
        options: vec![],
    });
    assert_eq!(packet.to_string(), r#"RRQ "a\"b\nc" octet"#);
}

#[test]
fn test_display_option_not_utf8() {
    let packet = Packet::Oack {
        options: vec![RawOption {
            name: b"x\xff",
            value: b"\xfe1",
        }],
    };
    assert_eq!(packet.to_string(), "OACK x\u{FFFD}=\u{FFFD}1");
}

#[test]
fn test_display_data() {
    let payload = [0u8; 512];
    let packet = Packet::Data {
        block: 1,
        data: &payload,
    };
    assert_eq!(packet.to_string(), "DATA #1 (512 B)");
    assert_eq!(data_empty_repr().to_string(), "DATA #2177 (0 B)");
}

#[test]
fn test_display_ack() {
    assert_eq!(Packet::Ack { block: 7 }.to_string(), "ACK #7");
    assert_eq!(Packet::Ack { block: 65535 }.to_string(), "ACK #65535");
}

#[test]
fn test_display_error() {
    assert_eq!(error_repr().to_string(), r#"ERROR 1 "File not found""#);
    let packet = Packet::Error {
        code: ErrorCode(0xbeef),
        message: "",
    };
    assert_eq!(packet.to_string(), r#"ERROR 48879 """#);
}

#[test]
fn test_display_oack() {
    let packet = Packet::Oack {
        options: vec![RawOption::new("blksize", "1024")],
    };
    assert_eq!(packet.to_string(), "OACK blksize=1024");
    assert_eq!(oack_repr().to_string(), "OACK blksize=1024 tsize=2228224");
    assert_eq!(Packet::Oack { options: vec![] }.to_string(), "OACK");
}

#[test]
fn test_display_parse_error() {
    assert_eq!(ParseError::TooShort.to_string(), "packet too short");
    assert_eq!(ParseError::UnknownOpcode(7).to_string(), "unknown opcode 7");
    assert_eq!(
        ParseError::MissingNul("mode").to_string(),
        "mode is not NUL-terminated"
    );
    assert_eq!(
        ParseError::TooManyOptions.to_string(),
        "more than 32 options"
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An owned request, so a strategy can produce it; the borrowed
    /// [`Packet`] is built from it in the test body.
    #[derive(Debug, Clone)]
    struct OwnedRequest {
        filename: String,
        mode: Mode,
        options: Vec<(Vec<u8>, Vec<u8>)>,
    }

    #[derive(Debug, Clone)]
    enum OwnedPacket {
        Rrq(OwnedRequest),
        Wrq(OwnedRequest),
        Data { block: u16, data: Vec<u8> },
        Ack { block: u16 },
        Error { code: u16, message: String },
        Oack { options: Vec<(Vec<u8>, Vec<u8>)> },
    }

    fn raw_options(options: &[(Vec<u8>, Vec<u8>)]) -> Vec<RawOption<'_>> {
        options
            .iter()
            .map(|(name, value)| RawOption { name, value })
            .collect()
    }

    fn request(r: &OwnedRequest) -> Request<'_> {
        Request {
            filename: &r.filename,
            mode: r.mode,
            options: raw_options(&r.options),
        }
    }

    impl OwnedPacket {
        fn packet(&self) -> Packet<'_> {
            match self {
                OwnedPacket::Rrq(r) => Packet::Rrq(request(r)),
                OwnedPacket::Wrq(r) => Packet::Wrq(request(r)),
                OwnedPacket::Data { block, data } => Packet::Data {
                    block: *block,
                    data,
                },
                OwnedPacket::Ack { block } => Packet::Ack { block: *block },
                OwnedPacket::Error { code, message } => Packet::Error {
                    code: ErrorCode(*code),
                    message,
                },
                OwnedPacket::Oack { options } => Packet::Oack {
                    options: raw_options(options),
                },
            }
        }
    }

    /// Non-empty UTF-8 without NUL.
    fn filename() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("start4.elf".to_string()),
            "[a-zA-Z0-9._/-]{1,32}",
            "[^\\x00]{1,64}",
        ]
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Octet), Just(Mode::Netascii), Just(Mode::Mail)]
    }

    /// Non-empty bytes without NUL, often a real option name in any case.
    fn option_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "(?i)blksize|tsize|timeout|windowsize|utimeout".prop_map(String::into_bytes),
            prop::collection::vec(1u8..=255, 1..24),
        ]
    }

    /// Bytes without NUL, possibly empty.
    fn option_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[0-9]{1,8}".prop_map(String::into_bytes),
            prop::collection::vec(1u8..=255, 0..24),
        ]
    }

    fn options() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
        prop::collection::vec((option_name(), option_value()), 0..=MAX_OPTIONS)
    }

    fn owned_request() -> impl Strategy<Value = OwnedRequest> {
        (filename(), mode(), options()).prop_map(|(filename, mode, options)| OwnedRequest {
            filename,
            mode,
            options,
        })
    }

    fn owned_packet() -> impl Strategy<Value = OwnedPacket> {
        prop_oneof![
            owned_request().prop_map(OwnedPacket::Rrq),
            owned_request().prop_map(OwnedPacket::Wrq),
            (any::<u16>(), prop::collection::vec(any::<u8>(), 0..=1500))
                .prop_map(|(block, data)| OwnedPacket::Data { block, data }),
            any::<u16>().prop_map(|block| OwnedPacket::Ack { block }),
            (any::<u16>(), "[^\\x00]{0,100}")
                .prop_map(|(code, message)| OwnedPacket::Error { code, message }),
            options().prop_map(|options| OwnedPacket::Oack { options }),
        ]
    }

    /// Tokens that make up requests and OACKs, so that arbitrary input gets
    /// past the filename and mode often enough to exercise option parsing.
    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => Just(b"\0".to_vec()),
            1 => Just(b"\0\0\0\0".to_vec()),
            2 => prop::sample::select(vec![
                "start4.elf", "octet", "OCTET", "netascii", "mail", "binary",
                "blksize", "tsize", "timeout", "windowsize", "0", "1024", "8",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            2 => prop::collection::vec(any::<u8>(), 1..8),
            1 => Just(vec![0xff]),
            1 => Just("ö".as_bytes().to_vec()),
            1 => Just(vec![0xc3]),
        ]
    }

    /// Up to 600 bytes, mostly starting with an opcode in 0..=7.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..600),
            2 => (0u16..=7, prop::collection::vec(any::<u8>(), 0..598)).prop_map(|(op, rest)| {
                let mut bytes = op.to_be_bytes().to_vec();
                bytes.extend(rest);
                bytes
            }),
            3 => (0u16..=7, prop::collection::vec(token(), 0..40)).prop_map(|(op, tokens)| {
                let mut bytes = op.to_be_bytes().to_vec();
                for t in tokens {
                    bytes.extend(t);
                }
                bytes.truncate(600);
                bytes
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// emit then parse gives back the same packet; `emitted_len` is
        /// exactly what `emit` writes; one byte less is `BufferTooSmall`.
        #[test]
        fn prop_emit_parse_roundtrip(owned in owned_packet()) {
            let packet = owned.packet();
            let need = packet.emitted_len();

            let mut buf = vec![0xa5u8; need + 16];
            let len = packet.emit(&mut buf).unwrap();
            prop_assert_eq!(len, need);
            prop_assert!(buf[len..].iter().all(|&b| b == 0xa5));
            prop_assert_eq!(Packet::parse(&buf[..len]), Ok(packet.clone()));

            let mut short = vec![0u8; need - 1];
            prop_assert_eq!(
                packet.emit(&mut short),
                Err(BufferTooSmall { need, have: need - 1 })
            );
        }

        /// Parsing never panics; whatever parses re-emits to something that
        /// parses to the same value, and DATA is borrowed from the input.
        #[test]
        fn prop_parse_arbitrary(bytes in datagram()) {
            let Ok(packet) = Packet::parse(&bytes) else {
                return Ok(());
            };
            if let Packet::Data { data, .. } = &packet {
                let input = bytes.as_ptr_range();
                let payload = data.as_ptr_range();
                prop_assert!(input.start <= payload.start && payload.end <= input.end);
            }
            let mut buf = vec![0u8; packet.emitted_len()];
            let len = packet.emit(&mut buf).unwrap();
            prop_assert_eq!(len, buf.len());
            prop_assert_eq!(Packet::parse(&buf), Ok(packet));
        }

        /// `emit_error` never fails on a buffer of 5 bytes or more, and what it
        /// writes parses back to a prefix of the message.
        #[test]
        fn prop_emit_error_truncates(
            code in any::<u16>(),
            message in "[^\\x00]{0,40}",
            size in 5usize..80,
        ) {
            let mut buf = vec![0u8; size];
            let len = emit_error(&mut buf, ErrorCode(code), &message).unwrap();
            prop_assert!(len <= size);
            let Ok(Packet::Error { code: parsed_code, message: parsed }) = Packet::parse(&buf[..len])
            else {
                return Err(TestCaseError::fail("not an ERROR"));
            };
            prop_assert_eq!(parsed_code, ErrorCode(code));
            prop_assert!(message.starts_with(parsed));
            // Truncated only as far as needed: the next character would not fit.
            if parsed.len() < message.len() {
                let next = message[parsed.len()..].chars().next().unwrap();
                prop_assert!(4 + parsed.len() + next.len_utf8() + 1 > size);
            }
        }
    }
}
