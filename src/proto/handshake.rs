//! The exchange before any DATA moves: a server's OACK, resent until ACK 0
//! arrives, or a client's request, resent until the server answers. The
//! role machines (`send_machine.rs`, `recv_machine.rs`) hold one in their
//! first phase; their window's timer says when to resend it.

use crate::options::{Negotiated, OptionRequest};
use crate::wire::{Mode, Opcode};

/// What a [`super::send_machine::SendMachine`] sends before DATA.
pub(crate) enum Handshake {
    /// Server: the OACK is (re)sent until ACK 0 arrives.
    Oack { owed: bool },
    /// Client: the WRQ is (re)sent until the server answers.
    Request(ClientRequest),
}

impl Handshake {
    pub fn set_owed(&mut self) {
        match self {
            Handshake::Oack { owed } => *owed = true,
            Handshake::Request(request) => request.set_owed(),
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
            Handshake::Oack { owed: false } => None,
            Handshake::Request(request) => request.poll(buf, opcode),
        }
    }
}

/// A client's request, (re)sent to the server's well-known port until the
/// server answers.
pub(crate) struct ClientRequest {
    owed: bool,
    filename: String,
    mode: Mode,
    pub options: OptionRequest,
}

impl ClientRequest {
    /// A request, owed at once.
    pub fn new(filename: &str, mode: Mode, options: OptionRequest) -> Self {
        ClientRequest {
            owed: true,
            filename: filename.to_string(),
            mode,
            options,
        }
    }

    pub fn set_owed(&mut self) {
        self.owed = true;
    }

    /// Emits the request (`opcode` RRQ or WRQ) if it is owed.
    pub fn poll(&mut self, buf: &mut [u8], opcode: Opcode) -> Option<usize> {
        if !std::mem::take(&mut self.owed) {
            return None;
        }
        self.options
            .emit_request(buf, opcode, &self.filename, self.mode)
            .ok()
    }
}
