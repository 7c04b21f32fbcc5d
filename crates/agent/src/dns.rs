//! DNS snooping: answers the node's ruleset copies to NFLOG (prefix `caracal-dns`) are parsed
//! with `simple-dns` into "client asked for NAME and got ADDRESS", kept for the answer's TTL
//! plus a grace, so a connection the client opens to that address carries the names as its
//! destination domains. Pure: packets and time come in from the agent's loop.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::{Packet, PacketFlag};

use crate::nflog::split_packet;

/// The NFLOG prefix of copied DNS answers.
pub const DNS_PREFIX: &str = caracal_policy::DNS_LOG_PREFIX;

/// Why a copied packet was not a usable DNS answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// The IP or UDP header did not parse.
    #[error("packet: {0}")]
    Packet(String),
    /// Not UDP from port 53.
    #[error("not a UDP packet from port 53")]
    NotDns,
    /// The DNS message did not parse.
    #[error("DNS message: {0}")]
    Message(String),
    /// A query, not an answer.
    #[error("a query, not a response")]
    Query,
}

/// What one DNS response told one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The address the answer went to (the client that asked).
    pub client: IpAddr,
    /// (name, address, TTL seconds): each address with every name of the chain that led to it.
    pub records: Vec<(String, IpAddr, u32)>,
}

/// Parses an IP packet holding a UDP DNS response.
pub fn parse_answer(ip_packet: &[u8]) -> Result<DnsAnswer, DnsError> {
    let (tuple, transport) =
        split_packet(ip_packet).map_err(|error| DnsError::Packet(error.to_string()))?;
    if tuple.protocol != 17 || tuple.source_port != 53 || transport.len() < 8 {
        return Err(DnsError::NotDns);
    }
    let message = &transport[8..];
    let packet = Packet::parse(message).map_err(|error| DnsError::Message(error.to_string()))?;
    if !packet.has_flags(PacketFlag::RESPONSE) {
        return Err(DnsError::Query);
    }
    // CNAME links, target -> owner, to walk from an address record back to the asked name.
    let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
    for record in &packet.answers {
        if let RData::CNAME(target) = &record.rdata {
            aliases
                .entry(normalise(&target.0.to_string()))
                .or_default()
                .push(normalise(&record.name.to_string()));
        }
    }
    let mut records = Vec::new();
    for record in &packet.answers {
        let address = match &record.rdata {
            RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
            RData::AAAA(aaaa) => IpAddr::V6(Ipv6Addr::from(aaaa.address)),
            _ => continue,
        };
        let mut names = vec![normalise(&record.name.to_string())];
        let mut next = 0;
        // Bounded: a chain longer than 8 links or a loop stops the walk.
        while next < names.len() && names.len() < 8 {
            if let Some(owners) = aliases.get(&names[next]) {
                for owner in owners {
                    if !names.contains(owner) {
                        names.push(owner.clone());
                    }
                }
            }
            next += 1;
        }
        for name in names {
            records.push((name, address, record.ttl));
        }
    }
    Ok(DnsAnswer {
        client: tuple.destination,
        records,
    })
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

struct Learned {
    name: String,
    expires: i64,
}

/// Names each client resolved to each address, while their TTL (plus grace) lasts.
pub struct DnsCache {
    entries: HashMap<(IpAddr, IpAddr), Vec<Learned>>,
    capacity: usize,
    grace: i64,
    /// Answers dropped because the cache was full of live entries.
    pub dropped: u64,
}

/// Names kept per (client, address) pair; flows carry at most 5 anyway.
const NAMES_PER_PAIR: usize = 8;

impl DnsCache {
    /// A cache of at most `capacity` (client, address) pairs; entries outlive their TTL by
    /// `grace` seconds because clients cache answers too and connect a little later.
    pub fn new(capacity: usize, grace: i64) -> Self {
        DnsCache {
            entries: HashMap::new(),
            capacity,
            grace,
            dropped: 0,
        }
    }

    /// Learns an answer seen at `now`.
    pub fn learn(&mut self, answer: &DnsAnswer, now: i64) {
        for (name, address, ttl) in &answer.records {
            let key = (answer.client, *address);
            if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
                self.expire(now);
                if self.entries.len() >= self.capacity {
                    self.dropped += 1;
                    continue;
                }
            }
            let expires = now + i64::from(*ttl) + self.grace;
            let names = self.entries.entry(key).or_default();
            if let Some(learned) = names.iter_mut().find(|learned| &learned.name == name) {
                learned.expires = learned.expires.max(expires);
            } else if names.len() < NAMES_PER_PAIR {
                names.push(Learned {
                    name: name.clone(),
                    expires,
                });
            }
        }
    }

    /// The names `client` resolved to `address`, still valid at `now`.
    pub fn names(&self, client: IpAddr, address: IpAddr, now: i64) -> Vec<String> {
        self.entries
            .get(&(client, address))
            .map(|names| {
                names
                    .iter()
                    .filter(|learned| learned.expires >= now)
                    .map(|learned| learned.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets what expired before `now`.
    pub fn expire(&mut self, now: i64) {
        self.entries.retain(|_, names| {
            names.retain(|learned| learned.expires >= now);
            !names.is_empty()
        });
    }

    /// (client, address) pairs held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use simple_dns::rdata::{A, CNAME};
    use simple_dns::{Name, ResourceRecord, CLASS};

    use super::*;

    fn response(records: Vec<ResourceRecord<'static>>) -> Vec<u8> {
        let mut packet = Packet::new_reply(7);
        packet.answers = records;
        packet.build_bytes_vec().expect("builds")
    }

    fn a(name: &'static str, address: [u8; 4], ttl: u32) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            ttl,
            RData::A(A::from(Ipv4Addr::from(address))),
        )
    }

    /// An IPv4/UDP packet from `server:53` to `client:port` carrying `dns`.
    fn udp_packet(server: Ipv4Addr, client: Ipv4Addr, port: u16, dns: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + dns.len();
        let mut packet = vec![0x45, 0];
        packet.extend_from_slice(&(total as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        packet.extend_from_slice(&server.octets());
        packet.extend_from_slice(&client.octets());
        packet.extend_from_slice(&53u16.to_be_bytes());
        packet.extend_from_slice(&port.to_be_bytes());
        packet.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(dns);
        packet
    }

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

    #[test]
    fn an_answer_names_the_address_with_its_whole_chain() {
        let cname = ResourceRecord::new(
            Name::new_unchecked("shop.example"),
            CLASS::IN,
            300,
            RData::CNAME(CNAME(Name::new_unchecked("edge.cdn.example"))),
        );
        let dns = response(vec![cname, a("edge.cdn.example", [203, 0, 113, 9], 60)]);
        let answer = parse_answer(&udp_packet(SERVER, CLIENT, 40000, &dns)).expect("parses");
        assert_eq!(answer.client, IpAddr::V4(CLIENT));
        let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(
            answer.records,
            vec![
                ("edge.cdn.example".to_string(), address, 60),
                ("shop.example".to_string(), address, 60),
            ]
        );
    }

    #[test]
    fn queries_and_other_ports_are_not_answers() {
        let query = Packet::new_query(1).build_bytes_vec().expect("builds");
        assert_eq!(
            parse_answer(&udp_packet(SERVER, CLIENT, 4000, &query)),
            Err(DnsError::Query)
        );
        let mut packet = udp_packet(SERVER, CLIENT, 4000, &query);
        packet[20..22].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(parse_answer(&packet), Err(DnsError::NotDns));
        assert!(matches!(
            parse_answer(&udp_packet(SERVER, CLIENT, 4000, &[1, 2, 3])),
            Err(DnsError::Message(_))
        ));
    }

    #[test]
    fn names_last_for_their_ttl_plus_grace_and_per_client() {
        let mut cache = DnsCache::new(100, 30);
        let dns = response(vec![a("API.Partner.Example.", [203, 0, 113, 7], 10)]);
        let answer = parse_answer(&udp_packet(SERVER, CLIENT, 1, &dns)).expect("parses");
        cache.learn(&answer, 1000);
        let address = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(
            cache.names(IpAddr::V4(CLIENT), address, 1040),
            vec!["api.partner.example"]
        );
        assert!(cache.names(IpAddr::V4(CLIENT), address, 1041).is_empty());
        let other = IpAddr::V4(Ipv4Addr::new(10, 244, 0, 6));
        assert!(cache.names(other, address, 1000).is_empty());
        cache.expire(1041);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_makes_room_from_expired_entries_and_counts_what_it_drops() {
        let mut cache = DnsCache::new(2, 0);
        for (index, now) in [(1u8, 0), (2, 0), (3, 0), (4, 100)] {
            let dns = response(vec![a("x.example", [192, 0, 2, index], 10)]);
            let answer = parse_answer(&udp_packet(SERVER, CLIENT, 1, &dns)).expect("parses");
            cache.learn(&answer, now);
        }
        assert_eq!(cache.dropped, 1);
        assert_eq!(cache.len(), 1);
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_answer(&bytes);
            let _ = parse_answer(&udp_packet(SERVER, CLIENT, 1, &bytes));
        }
    }
}
