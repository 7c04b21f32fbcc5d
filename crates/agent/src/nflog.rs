//! NFLOG verdicts. The ruleset logs the first packet of a connection at every verdict with a
//! prefix `caracal:<generation>:<id>` (see caracal-policy's renderer); this module opens the
//! netlink socket that receives them and parses each into (generation, tag id, five-tuple).
//! Parsing is pure and separate from the socket so it is fuzzed and tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigFlags, ConfigMode, PacketNla, Timeout, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::Socket;
use thiserror::Error;

/// Why a logged packet or the socket could not be used.
#[derive(Debug, Error)]
pub enum NflogError {
    /// The prefix is not one of ours.
    #[error("prefix `{0}` is not caracal:<generation>:<id>")]
    Prefix(String),
    /// The packet is too short or not IPv4/IPv6.
    #[error("packet: {0}")]
    Packet(&'static str),
    /// The netlink socket failed.
    #[error("nflog socket: {what}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused a configuration request.
    #[error("nflog: the kernel refused `{what}` with error {code}")]
    Refused {
        /// The request.
        what: &'static str,
        /// The errno.
        code: i32,
    },
}

/// Addresses, ports and protocol of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    /// IP protocol number.
    pub protocol: u8,
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// Source port (ICMP: 0).
    pub source_port: u16,
    /// Destination port (ICMP: type << 8 | code).
    pub destination_port: u16,
}

/// One logged verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Ruleset generation from the prefix.
    pub generation: u32,
    /// Tag id from the prefix.
    pub tag: u32,
    /// The packet's five-tuple.
    pub packet: FiveTuple,
}

/// Parses `caracal:<generation>:<id>`.
pub fn parse_prefix(prefix: &str) -> Result<(u32, u32), NflogError> {
    let bad = || NflogError::Prefix(prefix.escape_default().to_string());
    let rest = prefix.strip_prefix("caracal:").ok_or_else(bad)?;
    let (generation, id) = rest.split_once(':').ok_or_else(bad)?;
    Ok((
        generation.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Parses the network and transport headers of a logged packet.
pub fn parse_packet(payload: &[u8]) -> Result<FiveTuple, NflogError> {
    split_packet(payload).map(|(tuple, _)| tuple)
}

/// The five-tuple of a logged packet and the bytes after its IP header (the transport header
/// and what follows, as far as the packet was copied).
pub fn split_packet(payload: &[u8]) -> Result<(FiveTuple, &[u8]), NflogError> {
    let version = payload.first().ok_or(NflogError::Packet("empty"))? >> 4;
    let (protocol, source, destination, transport) = match version {
        4 => {
            if payload.len() < 20 {
                return Err(NflogError::Packet("IPv4 header shorter than 20 bytes"));
            }
            let header_length = usize::from(payload[0] & 0x0f) * 4;
            if header_length < 20 || payload.len() < header_length {
                return Err(NflogError::Packet("IPv4 header length out of range"));
            }
            let source = Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]);
            let destination = Ipv4Addr::new(payload[16], payload[17], payload[18], payload[19]);
            (
                payload[9],
                IpAddr::V4(source),
                IpAddr::V4(destination),
                &payload[header_length..],
            )
        }
        6 => {
            if payload.len() < 40 {
                return Err(NflogError::Packet("IPv6 header shorter than 40 bytes"));
            }
            let address = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&payload[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            // Extension headers are not walked: the next header is taken as the transport.
            (payload[6], address(8), address(24), &payload[40..])
        }
        _ => return Err(NflogError::Packet("neither IPv4 nor IPv6")),
    };
    let (source_port, destination_port) = match protocol {
        6 | 17 | 132 | 136 if transport.len() >= 4 => (
            u16::from_be_bytes([transport[0], transport[1]]),
            u16::from_be_bytes([transport[2], transport[3]]),
        ),
        1 | 58 if transport.len() >= 2 => (0, u16::from_be_bytes([transport[0], transport[1]])),
        6 | 17 | 132 | 136 | 1 | 58 => {
            return Err(NflogError::Packet("transport header truncated"))
        }
        _ => (0, 0),
    };
    Ok((
        FiveTuple {
            protocol,
            source,
            destination,
            source_port,
            destination_port,
        },
        transport,
    ))
}

/// A netlink socket bound to one NFLOG group, in the network namespace of the thread that
/// opened it.
pub struct NflogSocket {
    socket: Socket,
    buffer: Vec<u8>,
}

fn send_config(
    socket: &Socket,
    message: NetlinkMessage<NetfilterMessage>,
    what: &'static str,
    buffer: &mut [u8],
) -> Result<(), NflogError> {
    let mut bytes = vec![0; message.header.length as usize];
    message.serialize(&mut bytes);
    socket
        .send(&bytes, 0)
        .map_err(|source| NflogError::Socket { what, source })?;
    let size = socket
        .recv(&mut &mut buffer[..], 0)
        .map_err(|source| NflogError::Socket { what, source })?;
    let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&buffer[..size])
        .map_err(|_| NflogError::Packet("unreadable netlink reply"))?;
    if let NetlinkPayload::Error(error) = reply.payload {
        if let Some(code) = error.code {
            return Err(NflogError::Refused {
                what,
                code: code.get(),
            });
        }
    }
    Ok(())
}

impl NflogSocket {
    /// Binds NFLOG group `group` for IPv4 and IPv6, copying the first `copy_bytes` of each
    /// packet (headers are enough).
    pub fn open(group: u16, copy_bytes: u32) -> Result<NflogSocket, NflogError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|source| NflogError::Socket {
            what: "socket",
            source,
        })?;
        socket.bind_auto().map_err(|source| NflogError::Socket {
            what: "bind",
            source,
        })?;
        let mut buffer = vec![0; 1 << 16];
        for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
            send_config(
                &socket,
                config_request(family, 0, vec![ConfigCmd::PfBind.into()]),
                "bind protocol family",
                &mut buffer,
            )?;
        }
        let timeout: Timeout = Duration::from_millis(20).into();
        let bind = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigFlags::SEQ_GLOBAL.into(),
                ConfigMode::new_packet(copy_bytes).into(),
                timeout.into(),
            ],
        );
        send_config(&socket, bind, "bind group", &mut buffer)?;
        socket
            .set_non_blocking(true)
            .map_err(|source| NflogError::Socket {
                what: "non-blocking",
                source,
            })?;
        Ok(NflogSocket { socket, buffer })
    }

    /// Every logged packet waiting on the socket, as (prefix, payload); empty when none.
    pub fn receive(&mut self) -> Result<Vec<(String, Vec<u8>)>, NflogError> {
        let mut packets = Vec::new();
        crate::netlink::drain(&self.socket, &mut self.buffer, |datagram| {
            crate::netlink::messages(datagram, |message| {
                if let NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                    ..
                }) = message.payload
                {
                    let (mut prefix, mut payload) = (String::new(), Vec::new());
                    for nla in nlas {
                        match nla {
                            PacketNla::Prefix(text) => prefix = text.to_string_lossy().into_owned(),
                            PacketNla::Payload(bytes) => payload = bytes,
                            _ => {}
                        }
                    }
                    packets.push((prefix, payload));
                }
                true
            });
        })?;
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// IPv4 TCP SYN 10.244.0.2:40000 -> 10.244.1.3:5432 (header only).
    const TCP_SYN: [u8; 24] = [
        0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 0, 2, 10, 244, 1, 3, 0x9c, 0x40, 0x15,
        0x38,
    ];

    #[test]
    fn prefixes_and_packets_parse() {
        assert_eq!(parse_prefix("caracal:3:17").unwrap(), (3, 17));
        for bad in ["caracal:3", "other:1:2", "caracal:x:1", "caracal:1:2:3"] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
        let tuple = parse_packet(&TCP_SYN).unwrap();
        assert_eq!(tuple.protocol, 6);
        assert_eq!(
            (tuple.source.to_string(), tuple.source_port),
            ("10.244.0.2".to_string(), 40000)
        );
        assert_eq!(
            (tuple.destination.to_string(), tuple.destination_port),
            ("10.244.1.3".to_string(), 5432)
        );
        assert!(parse_packet(&TCP_SYN[..22]).is_err(), "truncated ports");
        assert!(parse_packet(&[0x70]).is_err(), "not IP");
    }

    proptest! {
        #[test]
        fn the_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), text in "[ -~]{0,30}") {
            let _ = parse_packet(&bytes);
            let _ = parse_prefix(&text);
        }
    }
}
