//! What both kernel collectors do with their netlink sockets: read every datagram waiting on
//! a non-blocking socket, and walk the (4-byte aligned) messages packed in one datagram.

use netlink_packet_core::NetlinkMessage;
use netlink_packet_netfilter::NetfilterMessage;
use netlink_sys::Socket;

use crate::nflog::NflogError;

/// Calls `each` with every datagram waiting on `socket`; returns when none is left.
pub(crate) fn drain(
    socket: &Socket,
    buffer: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<(), NflogError> {
    loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Ok(size) => each(&buffer[..size]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(source) => {
                return Err(NflogError::Socket {
                    what: "receive",
                    source,
                })
            }
        }
    }
}

/// Calls `each` with every message of a datagram until it returns false or the datagram (or a
/// message that does not parse) ends; returns whether `each` stopped it.
pub(crate) fn messages(
    datagram: &[u8],
    mut each: impl FnMut(NetlinkMessage<NetfilterMessage>) -> bool,
) -> bool {
    let mut offset = 0;
    while offset < datagram.len() {
        let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(&datagram[offset..])
        else {
            return false;
        };
        let length = message.header.length as usize;
        if !each(message) {
            return true;
        }
        if length == 0 {
            return false;
        }
        offset += (length + 3) & !3;
    }
    false
}
