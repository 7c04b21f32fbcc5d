//! The lab's built-in workloads: a TCP listener on every declared port of every pod and
//! external, and one client thread per traffic pattern that opens connections at its rate
//! from random replicas and sends its bytes. Every loop is bounded by its duration or the
//! runner's stop, and by the lab's own addresses: targets are lab pods, services, externals.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::netns::LabError;
use crate::node::{tcp_send, TcpListeners};
use crate::spec::TrafficSpec;

/// Counts of the runner.
#[derive(Debug, Default)]
pub struct TrafficStats {
    /// Connections that completed.
    pub connected: AtomicU64,
    /// Connections refused, dropped or timed out (policy denials among them).
    pub failed: AtomicU64,
}

/// Running traffic; stops when dropped.
pub struct TrafficRunner {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _listeners: Vec<TcpListeners>,
    /// Counts.
    pub stats: Arc<TrafficStats>,
}

struct Pattern {
    sources: Vec<String>,
    targets: Vec<Ipv4Addr>,
    port: u16,
    interval: Duration,
    bytes: usize,
    duration: Option<Duration>,
}

fn resolve(lab: &Lab, spec: &TrafficSpec) -> Option<Pattern> {
    let (namespace, workload) = spec.from.split_once('/')?;
    let sources: Vec<String> = lab
        .pods
        .iter()
        .filter(|pod| pod.namespace == namespace && pod.workload == workload)
        .map(|pod| pod.netns.clone())
        .collect();
    let targets: Vec<Ipv4Addr> = match spec.to.split_once(':')? {
        ("service", target) => {
            let (namespace, name) = target.split_once('/')?;
            lab.services
                .iter()
                .filter(|service| service.namespace == namespace && service.name == name)
                .map(|service| service.cluster_ip)
                .collect()
        }
        ("workload", target) => {
            let (namespace, name) = target.split_once('/')?;
            lab.pods
                .iter()
                .filter(|pod| pod.namespace == namespace && pod.workload == name)
                .map(|pod| pod.address)
                .collect()
        }
        ("external", name) => lab
            .externals
            .iter()
            .filter(|(external, _, _)| external == name)
            .map(|(_, _, address)| *address)
            .collect(),
        _ => return None,
    };
    (!sources.is_empty() && !targets.is_empty()).then(|| Pattern {
        sources,
        targets,
        port: spec.port,
        interval: Duration::from_secs_f64(1.0 / spec.rate),
        bytes: spec.bytes,
        duration: spec.duration.map(Duration::from_secs),
    })
}

impl TrafficRunner {
    /// Starts listeners and the traffic of `patterns` in `lab`.
    pub fn start(
        lab: &Lab,
        ports: &[(String, Vec<u16>)],
        patterns: &[TrafficSpec],
    ) -> Result<TrafficRunner, LabError> {
        let mut listeners = Vec::new();
        for (netns, ports) in ports {
            if !ports.is_empty() {
                listeners.push(TcpListeners::start_in(netns, ports)?);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(TrafficStats::default());
        let mut threads = Vec::new();
        for (index, spec) in patterns.iter().enumerate() {
            let Some(pattern) = resolve(lab, spec) else {
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
                    let target = SocketAddr::from((
                        pattern.targets[round % pattern.targets.len()],
                        pattern.port,
                    ));
                    round += 1;
                    let connected =
                        tcp_send(source, target, pattern.bytes, Duration::from_millis(500))
                            .unwrap_or(false);
                    let counter = if connected {
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
            _listeners: listeners,
            stats,
        })
    }

    /// The listening ports of a lab: every pod's declared ports and every external's.
    pub fn lab_ports(lab: &Lab, spec: &crate::spec::LabSpec) -> Vec<(String, Vec<u16>)> {
        let mut ports: Vec<(String, Vec<u16>)> = lab
            .pods
            .iter()
            .map(|pod| {
                let workload = spec
                    .workloads
                    .iter()
                    .find(|w| w.namespace == pod.namespace && w.name == pod.workload);
                (
                    pod.netns.clone(),
                    workload
                        .map(|w| {
                            w.ports
                                .iter()
                                .filter(|p| p.protocol == "TCP")
                                .map(|p| p.port)
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            })
            .collect();
        for (name, namespace, _) in &lab.externals {
            let declared = spec
                .externals
                .iter()
                .find(|external| &external.name == name)
                .map(|external| external.ports.clone())
                .unwrap_or_default();
            ports.push((namespace.name().to_string(), declared));
        }
        ports
    }
}

impl Drop for TrafficRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
