//! Conntrack: connection events (new, destroy) from ctnetlink's multicast groups and full
//! dumps, each entry with its original (pre-DNAT) and reply tuples, kernel id and the
//! byte/packet counters of both directions. Counters arrive only with accounting on
//! (`net.netfilter.nf_conntrack_acct=1` in the node's namespace), and events carry them only
//! on destroy, so long-lived connections are read by a dump every flush interval.

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

use crate::nflog::{FiveTuple, NflogError};

/// `NFNLGRP_CONNTRACK_NEW` and `NFNLGRP_CONNTRACK_DESTROY`.
const GROUP_NEW: u32 = 1;
const GROUP_DESTROY: u32 = 3;
/// `CTA_COUNTERS_ORIG`, `CTA_COUNTERS_REPLY`, `CTA_ID`; nested `CTA_COUNTERS_PACKETS/BYTES`.
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const COUNTERS_PACKETS: u16 = 1;
const COUNTERS_BYTES: u16 = 2;
const FLAG_BITS: u16 = 0xc000;

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryEvent {
    /// The connection was confirmed (or updated).
    New,
    /// The connection ended; its counters are final.
    Destroy,
    /// Read by a dump.
    Dump,
}

/// Packets and bytes of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes (IP headers included).
    pub bytes: u64,
}

/// One conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEntry {
    /// What produced it.
    pub event: EntryEvent,
    /// The kernel's id of the connection.
    pub id: u32,
    /// As the initiator sent it (destination is the service address before DNAT).
    pub original: FiveTuple,
    /// As the responder answers (source is the real backend after DNAT).
    pub reply: FiveTuple,
    /// Initiator to responder.
    pub original_counters: DirectionCounters,
    /// Responder to initiator.
    pub reply_counters: DirectionCounters,
}

fn raw_value(nla: &impl Nla) -> Vec<u8> {
    let mut bytes = vec![0; nla.value_len()];
    nla.emit_value(&mut bytes);
    bytes
}

fn counters(bytes: &[u8]) -> DirectionCounters {
    let mut result = DirectionCounters::default();
    for nla in NlasIterator::new(bytes).flatten() {
        let nla: NlaBuffer<&[u8]> = nla;
        let value = nla.value();
        if value.len() < 8 {
            continue;
        }
        let number = u64::from_be_bytes(value[..8].try_into().expect("eight bytes"));
        match nla.kind() & !FLAG_BITS {
            COUNTERS_PACKETS => result.packets = number,
            COUNTERS_BYTES => result.bytes = number,
            _ => {}
        }
    }
    result
}

fn protocol_number(protocol: &netlink_packet_netfilter::conntrack::Protocol) -> u8 {
    use netlink_packet_netfilter::conntrack::Protocol;
    match protocol {
        Protocol::Icmp => 1,
        Protocol::Igmp => 2,
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Dccp => 33,
        Protocol::Gre => 47,
        Protocol::Ipv6Icmp => 58,
        Protocol::IpIp => 4,
        Protocol::Sctp => 132,
        Protocol::UdpLite => 136,
        Protocol::Other(number) => *number,
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}

fn tuple(parts: &[Tuple]) -> Option<FiveTuple> {
    let (mut source, mut destination, mut protocol, mut source_port, mut destination_port) =
        (None, None, 0, 0, 0);
    for part in parts {
        match part {
            Tuple::Ip(addresses) => {
                for address in addresses {
                    match address {
                        IPTuple::SourceAddress(value) => source = Some(*value),
                        IPTuple::DestinationAddress(value) => destination = Some(*value),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(value) => protocol = protocol_number(value),
                        ProtoTuple::SourcePort(value) => source_port = *value,
                        ProtoTuple::DestinationPort(value) => destination_port = *value,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (source, destination): (IpAddr, IpAddr) = (source?, destination?);
    Some(FiveTuple {
        protocol,
        source,
        destination,
        source_port,
        destination_port,
    })
}

/// Turns one ctnetlink message into an entry; `None` for messages that are not entries.
pub fn entry_from(
    message: &NetlinkMessage<NetfilterMessage>,
    dump: bool,
) -> Option<ConntrackEntry> {
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::Conntrack(conntrack),
        ..
    }) = &message.payload
    else {
        return None;
    };
    let (event, attributes) = match conntrack {
        ConntrackMessage::New(attributes) => (
            if dump {
                EntryEvent::Dump
            } else {
                EntryEvent::New
            },
            attributes,
        ),
        ConntrackMessage::Delete(attributes) => (EntryEvent::Destroy, attributes),
        _ => return None,
    };
    let (mut original, mut reply, mut id) = (None, None, 0);
    let (mut original_counters, mut reply_counters) =
        (DirectionCounters::default(), DirectionCounters::default());
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(parts) => original = tuple(parts),
            ConntrackAttribute::CtaTupleReply(parts) => reply = tuple(parts),
            ConntrackAttribute::Other(nla) => {
                let value = raw_value(nla);
                match nla.kind() & !FLAG_BITS {
                    CTA_COUNTERS_ORIG => original_counters = counters(&value),
                    CTA_COUNTERS_REPLY => reply_counters = counters(&value),
                    CTA_ID if value.len() >= 4 => {
                        id = u32::from_be_bytes(value[..4].try_into().expect("four bytes"))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Some(ConntrackEntry {
        event,
        id,
        original: original?,
        reply: reply?,
        original_counters,
        reply_counters,
    })
}

/// A ctnetlink socket in the namespace of the thread that opened it.
pub struct ConntrackSocket {
    socket: Socket,
    buffer: Vec<u8>,
}

impl ConntrackSocket {
    /// Subscribes to new and destroyed connections.
    pub fn events() -> Result<ConntrackSocket, NflogError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|source| NflogError::Socket {
            what: "socket",
            source,
        })?;
        socket.bind_auto().map_err(|source| NflogError::Socket {
            what: "bind",
            source,
        })?;
        for group in [GROUP_NEW, GROUP_DESTROY] {
            socket
                .add_membership(group)
                .map_err(|source| NflogError::Socket {
                    what: "join conntrack group",
                    source,
                })?;
        }
        // Bursts of short connections must not overrun the queue between reads.
        let _ = socket.set_rx_buf_sz(8 << 20);
        socket
            .set_non_blocking(true)
            .map_err(|source| NflogError::Socket {
                what: "non-blocking",
                source,
            })?;
        Ok(ConntrackSocket {
            socket,
            buffer: vec![0; 1 << 16],
        })
    }

    /// Every event waiting; empty when none.
    pub fn receive(&mut self) -> Result<Vec<ConntrackEntry>, NflogError> {
        let mut entries = Vec::new();
        crate::netlink::drain(&self.socket, &mut self.buffer, |datagram| {
            parse_messages(datagram, false, &mut entries);
        })?;
        Ok(entries)
    }

    /// A socket for dumps, in the namespace of the calling thread.
    pub fn dumper() -> Result<ConntrackSocket, NflogError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|source| NflogError::Socket {
            what: "socket",
            source,
        })?;
        socket.bind_auto().map_err(|source| NflogError::Socket {
            what: "bind",
            source,
        })?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|source| NflogError::Socket {
                what: "connect",
                source,
            })?;
        Ok(ConntrackSocket {
            socket,
            buffer: vec![0; 1 << 16],
        })
    }

    /// Every connection the kernel tracks now, with counters so far (a one-off socket).
    pub fn dump() -> Result<Vec<ConntrackEntry>, NflogError> {
        Self::dumper()?.dump_now()
    }

    /// Every connection the kernel tracks now, read through this dump socket.
    pub fn dump_now(&mut self) -> Result<Vec<ConntrackEntry>, NflogError> {
        let mut entries = Vec::new();
        for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            let mut request = NetlinkMessage::new(
                header,
                NetlinkPayload::from(NetfilterMessage::new(
                    NetfilterHeader::new(family, 0, 0),
                    ConntrackMessage::Get(vec![]),
                )),
            );
            request.finalize();
            let mut bytes = vec![0; request.buffer_len()];
            request.serialize(&mut bytes);
            self.socket
                .send(&bytes, 0)
                .map_err(|source| NflogError::Socket {
                    what: "dump request",
                    source,
                })?;
            loop {
                let size = self
                    .socket
                    .recv(&mut &mut self.buffer[..], 0)
                    .map_err(|source| NflogError::Socket {
                        what: "dump",
                        source,
                    })?;
                if parse_messages(&self.buffer[..size], true, &mut entries) {
                    break;
                }
            }
        }
        Ok(entries)
    }
}

/// Parses every message in a datagram; true when the dump is done.
fn parse_messages(datagram: &[u8], dump: bool, entries: &mut Vec<ConntrackEntry>) -> bool {
    crate::netlink::messages(datagram, |message| match &message.payload {
        NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => false,
        _ => {
            entries.extend(entry_from(&message, dump));
            true
        }
    })
}
