//! The lab's built-in workloads: servers on every declared port of every pod and external
//! (TCP that also answers HTTP, UDP sinks, the DNS server), and one client thread per traffic
//! pattern that connects, requests or looks up at its rate from its replicas in turn. Every
//! loop is bounded by its duration or the runner's stop, and by the lab's own addresses:
//! targets are lab pods, services, externals, and names the lab DNS server maps to them.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::apps::{dns_lookup, http_request, udp_send, DnsRecords, UdpServers};
use crate::lab::Lab;
use crate::netns::LabError;
use crate::node::{tcp_send, TcpListeners};
use crate::spec::{LabSpec, TrafficProtocol, TrafficSpec};

/// Counts of the runner.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Connections, requests and lookups that completed.
    pub connected: AtomicU64,
    /// Connections refused, dropped or timed out (policy denials among them), failed
    /// requests and unanswered lookups.
    pub failed: AtomicU64,
}

/// Running traffic; stops when dropped.
pub struct TrafficRunner {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _tcp: Vec<TcpListeners>,
    _udp: Vec<UdpServers>,
    /// Counts.
    pub stats: Arc<TrafficStats>,
}

enum Target {
    Addresses(Vec<Ipv4Addr>),
    /// A name looked up at the DNS service before each connection.
    Domain(String),
}

struct Pattern {
    sources: Vec<String>,
    target: Target,
    protocol: TrafficProtocol,
    port: u16,
    dns: Option<SocketAddr>,
    interval: Duration,
    bytes: usize,
    duration: Option<Duration>,
}

fn service_address(lab: &Lab, qualified: &str) -> Option<Ipv4Addr> {
    let (namespace, name) = qualified.split_once('/')?;
    lab.services
        .iter()
        .find(|service| service.namespace == namespace && service.name == name)
        .map(|service| service.cluster_ip)
}

/// The lab DNS service's address and its first UDP port.
fn dns_service(lab: &Lab, spec: &LabSpec) -> Option<SocketAddr> {
    let qualified = spec.dns.as_ref()?;
    let (namespace, name) = qualified.split_once('/')?;
    let declared = spec
        .services
        .iter()
        .find(|service| service.namespace == namespace && service.name == name)?;
    let port = declared.ports.iter().find(|port| port.protocol == "UDP")?;
    Some(SocketAddr::from((
        service_address(lab, qualified)?,
        port.port,
    )))
}

/// What the lab DNS server answers: `<svc>.<ns>.svc.cluster.local` for every service, and the
/// spec's test domains.
pub fn dns_records(lab: &Lab, spec: &LabSpec) -> DnsRecords {
    let mut records = DnsRecords::new();
    for service in &lab.services {
        records.insert(
            format!("{}.{}.svc.cluster.local", service.name, service.namespace),
            service.cluster_ip,
        );
    }
    for (name, target) in &spec.domains {
        let address = match target.split_once(':') {
            Some(("external", external)) => lab
                .externals
                .iter()
                .find(|(declared, _, _)| declared == external)
                .map(|(_, _, address)| *address),
            Some(("service", service)) => service_address(lab, service),
            _ => None,
        };
        if let Some(address) = address {
            records.insert(name.clone(), address);
        }
    }
    records
}

fn resolve(lab: &Lab, spec: &LabSpec, traffic: &TrafficSpec) -> Option<Pattern> {
    let (namespace, workload) = traffic.from.split_once('/')?;
    let sources: Vec<String> = lab
        .pods
        .iter()
        .filter(|pod| pod.namespace == namespace && pod.workload == workload)
        .map(|pod| pod.netns.clone())
        .collect();
    let target = match traffic.to.split_once(':')? {
        ("service", target) => {
            Target::Addresses(service_address(lab, target).into_iter().collect())
        }
        ("workload", target) => {
            let (namespace, name) = target.split_once('/')?;
            Target::Addresses(
                lab.pods
                    .iter()
                    .filter(|pod| pod.namespace == namespace && pod.workload == name)
                    .map(|pod| pod.address)
                    .collect(),
            )
        }
        ("external", name) => Target::Addresses(
            lab.externals
                .iter()
                .filter(|(external, _, _)| external == name)
                .map(|(_, _, address)| *address)
                .collect(),
        ),
        ("domain", name) => Target::Domain(name.to_string()),
        _ => return None,
    };
    if sources.is_empty() || matches!(&target, Target::Addresses(addresses) if addresses.is_empty())
    {
        return None;
    }
    Some(Pattern {
        sources,
        target,
        protocol: traffic.protocol,
        port: traffic.port,
        dns: dns_service(lab, spec),
        interval: Duration::from_secs_f64(1.0 / traffic.rate),
        bytes: traffic.bytes,
        duration: traffic.duration.map(Duration::from_secs),
    })
}

impl Pattern {
    /// One connection, request or lookup from `source`; whether it completed.
    fn run_once(&self, source: &str, round: usize) -> bool {
        let timeout = Duration::from_millis(500);
        let (address, host) = match &self.target {
            Target::Addresses(addresses) => {
                let address = addresses[round % addresses.len()];
                (address, address.to_string())
            }
            Target::Domain(name) => {
                let Some(server) = self.dns else {
                    return false;
                };
                let answer = dns_lookup(source, server, name, timeout).ok().flatten();
                if self.protocol == TrafficProtocol::DNS {
                    return answer.is_some();
                }
                match answer.and_then(|addresses| addresses.first().copied()) {
                    Some(address) => (address, name.clone()),
                    None => return false,
                }
            }
        };
        let target = SocketAddr::from((address, self.port));
        let done = match self.protocol {
            TrafficProtocol::TCP => tcp_send(source, target, self.bytes, timeout),
            TrafficProtocol::UDP => udp_send(source, target, self.bytes),
            TrafficProtocol::HTTP => http_request(source, target, &host, self.bytes, timeout),
            // A spec's DNS patterns always name a domain (validated), handled above.
            TrafficProtocol::DNS => Ok(false),
        };
        done.unwrap_or(false)
    }
}

impl TrafficRunner {
    /// Starts the built-in servers of every pod and external of `spec`, and the traffic of
    /// `patterns` (usually `spec.traffic`).
    pub fn start(
        lab: &Lab,
        spec: &LabSpec,
        patterns: &[TrafficSpec],
    ) -> Result<TrafficRunner, LabError> {
        let records = Arc::new(dns_records(lab, spec));
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for servers in Self::lab_servers(lab, spec) {
            if !servers.tcp.is_empty() {
                tcp.push(TcpListeners::start_in(&servers.netns, &servers.tcp)?);
            }
            if !servers.udp.is_empty() || !servers.dns.is_empty() {
                udp.push(UdpServers::start_in(
                    &servers.netns,
                    &servers.udp,
                    &servers.dns,
                    records.clone(),
                )?);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(TrafficStats::default());
        let mut threads = Vec::new();
        for (index, traffic) in patterns.iter().enumerate() {
            let Some(pattern) = resolve(lab, spec, traffic) else {
                continue;
            };
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || {
                let started = Instant::now();
                let mut round = index;
                while !stop.load(Ordering::Relaxed)
                    && pattern
                        .duration
                        .is_none_or(|duration| started.elapsed() < duration)
                {
                    let source = &pattern.sources[round % pattern.sources.len()];
                    let completed = pattern.run_once(source, round);
                    round += 1;
                    let counter = if completed {
                        &stats.connected
                    } else {
                        &stats.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(pattern.interval);
                }
            }));
        }
        Ok(TrafficRunner {
            stop,
            threads,
            _tcp: tcp,
            _udp: udp,
            stats,
        })
    }

    /// The servers of a lab: every pod's declared ports and every external's.
    pub fn lab_servers(lab: &Lab, spec: &LabSpec) -> Vec<Servers> {
        let mut all: Vec<Servers> = lab
            .pods
            .iter()
            .map(|pod| {
                let mut servers = Servers {
                    netns: pod.netns.clone(),
                    ..Servers::default()
                };
                let workload = spec
                    .workloads
                    .iter()
                    .find(|w| w.namespace == pod.namespace && w.name == pod.workload);
                for port in workload.iter().flat_map(|workload| &workload.ports) {
                    match (port.protocol.as_str(), port.app_protocol.as_deref()) {
                        ("UDP", Some("dns")) => servers.dns.push(port.port),
                        ("UDP", _) => servers.udp.push(port.port),
                        _ => servers.tcp.push(port.port),
                    }
                }
                servers
            })
            .collect();
        for (name, namespace, _) in &lab.externals {
            let declared = spec
                .externals
                .iter()
                .find(|external| &external.name == name)
                .map(|external| external.ports.clone())
                .unwrap_or_default();
            all.push(Servers {
                netns: namespace.name().to_string(),
                tcp: declared,
                ..Servers::default()
            });
        }
        all
    }
}

/// The built-in servers of one network namespace.
#[derive(Clone, Debug, Default)]
pub struct Servers {
    /// The namespace.
    pub netns: String,
    /// TCP ports (HTTP requests answered).
    pub tcp: Vec<u16>,
    /// UDP sink ports.
    pub udp: Vec<u16>,
    /// UDP ports of the DNS server.
    pub dns: Vec<u16>,
}

impl Drop for TrafficRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
