//! Wiring one agent per lab node: sockets opened inside the node's namespace, an assembler
//! with the lab's inventory, services and the node's ruleset tags, and an uploader to the
//! server. Only the binary sees both the lab and the agent, so the wiring lives here.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use caracal_agent::{
    Assembler, AssemblyConfig, NodeAgent, NodeSockets, ServiceAddress, UploadConfig, Uploader,
};
use caracal_flow::ServiceRef;
use caracal_lab::{in_namespace, Lab, NFLOG_GROUP};
use caracal_policy::{Evaluator, Inventory};

/// The running agents of a lab and their uploaders.
pub struct LabAgents {
    /// One per node.
    pub agents: Vec<NodeAgent>,
    /// One per node.
    pub uploaders: Vec<Uploader>,
}

impl LabAgents {
    /// The agents' metrics, for the server's `/metrics` (the demo runs both in one process).
    pub fn metrics_source(&self, lab: &Lab) -> caracal_server::metrics::MetricSource {
        let agents: Vec<(String, std::sync::Arc<caracal_agent::NodeStats>, Uploader)> = lab
            .nodes
            .iter()
            .zip(&self.agents)
            .zip(&self.uploaders)
            .map(|(((name, _), agent), uploader)| {
                (name.clone(), agent.stats.clone(), uploader.clone())
            })
            .collect();
        Box::new(move || {
            let views: Vec<caracal_agent::metrics::AgentMetrics> = agents
                .iter()
                .map(
                    |(node, stats, uploader)| caracal_agent::metrics::AgentMetrics {
                        node,
                        stats,
                        uploader,
                    },
                )
                .collect();
            caracal_agent::metrics::render(&views)
        })
    }
}

/// The lab's services as the addresses the agent names pre-DNAT destinations by.
pub fn service_addresses(services: &[caracal_lab::LabService]) -> Vec<ServiceAddress> {
    services
        .iter()
        .flat_map(|service| {
            service.ports.iter().map(move |port| ServiceAddress {
                address: IpAddr::V4(service.cluster_ip),
                port: port.port,
                protocol: if port.protocol == "UDP" { 17 } else { 6 },
                service: ServiceRef {
                    name: service.name.clone(),
                    namespace: service.namespace.clone(),
                    port_name: port.name.clone(),
                    port: port.port,
                },
            })
        })
        .collect()
}

/// Starts one agent per node of `lab`, flushing every `flush_interval` seconds to `server`
/// (`http://host:port`). Upload tasks are spawned on the current tokio runtime.
pub fn start(lab: &Lab, server: &str, flush_interval: i64) -> anyhow::Result<LabAgents> {
    let services = service_addresses(&lab.services);
    let mut agents = Vec::new();
    let mut uploaders = Vec::new();
    for (name, node) in &lab.nodes {
        let sockets = in_namespace(node.namespace.name(), move || {
            NodeSockets::open(NFLOG_GROUP)
        })?
        .with_context(|| format!("opening the kernel sockets of node {name}"))?;
        let local = lab
            .pods
            .iter()
            .filter(|pod| &pod.node == name)
            .map(|pod| IpAddr::V4(pod.address))
            .collect();
        let mut assembler = Assembler::new(
            AssemblyConfig::default(),
            Inventory::new(lab.manifests()),
            Evaluator::new(&lab.manifests().policies),
            local,
            services.clone(),
        );
        assembler.set_ruleset(
            1,
            lab.rulesets
                .get(name)
                .map(|ruleset| ruleset.tags.clone())
                .unwrap_or_default(),
        );
        let (uploader, task) = Uploader::new(UploadConfig {
            server: server.to_string(),
            sender: name.clone(),
            max_buffered_batches: 10_000,
            max_backoff: Duration::from_secs(5),
        });
        tokio::spawn(task);
        agents.push(NodeAgent::start(
            sockets,
            assembler,
            uploader.clone(),
            flush_interval,
        ));
        uploaders.push(uploader);
    }
    Ok(LabAgents { agents, uploaders })
}
