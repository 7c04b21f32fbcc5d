//! The built-in applications lab pods run: a UDP sink, a DNS server that answers lab names and
//! test domains (A records, NXDOMAIN otherwise), and the clients of the traffic patterns (UDP
//! datagrams, HTTP requests, DNS lookups). DNS messages are built and parsed by `simple-dns`;
//! HTTP is the few lines of HTTP/1.1 a request and a `200 OK` need.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use simple_dns::rdata::{RData, A};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};

use crate::netns::{in_namespace, LabError};

/// TTL of the lab DNS server's answers, in seconds.
pub const DNS_TTL: u32 = 30;

/// Names the lab DNS server answers: fully qualified, lower case, without the final dot.
pub type DnsRecords = BTreeMap<String, Ipv4Addr>;

/// UDP servers in one network namespace: sinks, or DNS servers answering from `records`.
pub struct UdpServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpServers {
    /// Binds `sinks` (read and drop) and `dns` ports (answer from `records`) in `netns`.
    pub fn start_in(
        netns: &str,
        sinks: &[u16],
        dns: &[u16],
        records: Arc<DnsRecords>,
    ) -> Result<UdpServers, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let ports = sinks
            .iter()
            .map(|port| (*port, false))
            .chain(dns.iter().map(|port| (*port, true)));
        for (port, answers) in ports {
            let socket = in_namespace(netns, move || UdpSocket::bind(("0.0.0.0", port)))?.map_err(
                |source| LabError::Io {
                    what: format!("bind UDP port {port}"),
                    source,
                },
            )?;
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .map_err(|source| LabError::Io {
                    what: "UDP read timeout".into(),
                    source,
                })?;
            let (stop, records) = (stop.clone(), records.clone());
            threads.push(std::thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
                        continue;
                    };
                    if answers {
                        if let Some(reply) = dns_reply(&buffer[..length], &records) {
                            let _ = socket.send_to(&reply, peer);
                        }
                    }
                }
            }));
        }
        Ok(UdpServers { stop, threads })
    }
}

impl Drop for UdpServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The reply to a DNS query: A records for known names, NXDOMAIN for unknown ones, an empty
/// answer for other types of known names; None when the bytes are not a query.
pub fn dns_reply(query: &[u8], records: &DnsRecords) -> Option<Vec<u8>> {
    let query = Packet::parse(query).ok()?;
    if query.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let mut reply = Packet::new_reply(query.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if query.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let mut known = true;
    for question in &query.questions {
        let name = question.qname.to_string().to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        reply.questions.push(question.clone());
        match records.get(name) {
            Some(address) if question.qtype == QTYPE::TYPE(TYPE::A) => {
                reply.answers.push(ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    DNS_TTL,
                    RData::A(A::from(*address)),
                ));
            }
            Some(_) => {}
            None => known = false,
        }
    }
    if !known {
        *reply.rcode_mut() = RCODE::NameError;
    }
    reply.build_bytes_vec_compressed().ok()
}

/// Looks `name` up at `server` from inside `netns`; the A records, empty for NXDOMAIN; None
/// when no answer came within `timeout`.
pub fn dns_lookup(
    netns: &str,
    server: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Option<Vec<Ipv4Addr>>, LabError> {
    let name = name.to_string();
    in_namespace(netns, move || {
        let id = (std::process::id() as u16) ^ (name.len() as u16).rotate_left(7);
        let mut query = Packet::new_query(id);
        query.set_flags(PacketFlag::RECURSION_DESIRED);
        query.questions.push(simple_dns::Question::new(
            Name::new(&name).ok()?,
            QTYPE::TYPE(TYPE::A),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let bytes = query.build_bytes_vec().ok()?;
        let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        socket.set_read_timeout(Some(timeout)).ok()?;
        socket.send_to(&bytes, server).ok()?;
        let mut buffer = [0u8; 1500];
        let (length, _) = socket.recv_from(&mut buffer).ok()?;
        let reply = Packet::parse(&buffer[..length]).ok()?;
        if reply.id() != id {
            return None;
        }
        Some(
            reply
                .answers
                .iter()
                .filter_map(|record| match &record.rdata {
                    RData::A(a) => Some(Ipv4Addr::from(a.address)),
                    _ => None,
                })
                .collect(),
        )
    })
}

/// Sends `bytes` to `target` from inside `netns` as datagrams of at most 1,200 bytes (one
/// empty datagram when `bytes` is 0); false when sending failed.
pub fn udp_send(netns: &str, target: SocketAddr, bytes: usize) -> Result<bool, LabError> {
    in_namespace(netns, move || {
        let Ok(socket) = UdpSocket::bind(("0.0.0.0", 0)) else {
            return false;
        };
        let chunk = [0x5a_u8; 1200];
        let mut left = bytes;
        loop {
            let now = left.min(chunk.len());
            if socket.send_to(&chunk[..now], target).is_err() {
                return false;
            }
            left -= now;
            if left == 0 {
                return true;
            }
        }
    })
}

/// An HTTP/1.1 request from inside `netns`: `POST` with a body of `bytes` bytes, or `GET`
/// when `bytes` is 0, with `host` as the Host header; true when the answer was `200`.
pub fn http_request(
    netns: &str,
    target: SocketAddr,
    host: &str,
    bytes: usize,
    timeout: Duration,
) -> Result<bool, LabError> {
    let host = host.to_string();
    in_namespace(netns, move || {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, timeout) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let method = if bytes == 0 { "GET" } else { "POST" };
        let head = format!(
            "{method} / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: caracal-lab\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        );
        if stream.write_all(head.as_bytes()).is_err() {
            return false;
        }
        let chunk = vec![0x5a_u8; bytes.min(64 * 1024)];
        let mut left = bytes;
        while left > 0 {
            let now = left.min(chunk.len());
            if stream.write_all(&chunk[..now]).is_err() {
                return false;
            }
            left -= now;
        }
        let mut answer = Vec::new();
        let _ = stream.take(64 * 1024).read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200")
    })
}

/// Whether the first bytes of a TCP stream are an HTTP/1.x request line.
pub(crate) fn is_http_request(first: &[u8]) -> bool {
    ["GET ", "POST ", "HEAD ", "PUT ", "DELETE "]
        .iter()
        .any(|method| first.starts_with(method.as_bytes()))
}

/// Serves one HTTP request whose first `read` bytes are in `buffer`: reads the rest of its
/// body and answers `200 OK`.
pub(crate) fn answer_http(stream: &mut TcpStream, buffer: &mut [u8], mut read: usize) {
    let header_end = loop {
        if let Some(end) = buffer[..read].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if read == buffer.len() {
            return;
        }
        match stream.read(&mut buffer[read..]) {
            Ok(0) | Err(_) => return,
            Ok(more) => read += more,
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = read - header_end;
    while body < length.min(16 << 20) {
        match stream.read(buffer) {
            Ok(0) | Err(_) => return,
            Ok(more) => body += more,
        }
    }
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_server_answers_known_names_and_refuses_unknown_ones() {
        let records =
            DnsRecords::from([("api.partner.example".into(), Ipv4Addr::new(203, 0, 113, 10))]);
        let mut query = Packet::new_query(9);
        query.questions.push(simple_dns::Question::new(
            Name::new_unchecked("API.partner.example."),
            QTYPE::TYPE(TYPE::A),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let reply = dns_reply(&query.build_bytes_vec().unwrap(), &records).expect("a reply");
        let reply = Packet::parse(&reply).unwrap();
        assert_eq!(reply.id(), 9);
        assert!(reply.has_flags(PacketFlag::RESPONSE));
        assert!(
            matches!(&reply.answers[0].rdata, RData::A(a) if Ipv4Addr::from(a.address) == Ipv4Addr::new(203, 0, 113, 10))
        );

        let mut unknown = Packet::new_query(10);
        unknown.questions.push(simple_dns::Question::new(
            Name::new_unchecked("nowhere.example"),
            QTYPE::TYPE(TYPE::A),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let reply = dns_reply(&unknown.build_bytes_vec().unwrap(), &records).unwrap();
        let reply = Packet::parse(&reply).unwrap();
        assert_eq!(reply.rcode(), RCODE::NameError);
        assert!(reply.answers.is_empty());
        assert_eq!(dns_reply(&[1, 2, 3], &records), None);
    }

    #[test]
    fn http_request_lines_are_recognised() {
        assert!(is_http_request(b"GET / HTTP/1.1\r\n"));
        assert!(is_http_request(b"POST /x HTTP/1.1\r\n"));
        assert!(!is_http_request(b"\x16\x03\x01"));
        assert!(!is_http_request(b"GE"));
    }
}
