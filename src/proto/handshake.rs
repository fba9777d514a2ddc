//! The exchange before any DATA moves: a server's OACK, resent until ACK 0
//! arrives, or a client's request, resent until the server answers. Both
//! role machines ([`super::send_machine`], [`super::recv_machine`]) use it.

use crate::options::{Negotiated, OptionRequest};
use crate::wire::{Mode, Opcode};

pub(crate) enum Handshake {
    /// Straight to DATA (a server answering a request without options).
    Done,
    /// Server: the OACK is (re)sent until ACK 0 arrives.
    Oack { owed: bool },
    /// Client: the request is (re)sent until the server answers.
    Request {
        owed: bool,
        filename: String,
        mode: Mode,
        options: OptionRequest,
    },
}

impl Handshake {
    pub fn set_owed(&mut self) {
        if let Handshake::Oack { owed } | Handshake::Request { owed, .. } = self {
            *owed = true;
        }
    }

    /// Emits the OACK or request if one is owed.
    pub fn poll(
        &mut self,
        buf: &mut [u8],
        negotiated: &Negotiated,
        opcode: Opcode,
    ) -> Option<usize> {
        match self {
            Handshake::Oack { owed: owed @ true } => {
                *owed = false;
                negotiated.emit_oack(buf).ok()
            }
            Handshake::Request {
                owed: owed @ true,
                filename,
                mode,
                options,
            } => {
                *owed = false;
                options.emit_request(buf, opcode, filename, *mode).ok()
            }
            _ => None,
        }
    }
}
