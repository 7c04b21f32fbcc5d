//! Prometheus metrics of node agents: what the collectors read and rejected, what assembly
//! keeps, and what the uploader delivered, buffered and dropped. Written by hand in the text
//! format, like the server's: every value is an atomic read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::NodeStats;
use crate::upload::Uploader;

/// One agent as a scrape sees it.
pub struct AgentMetrics<'a> {
    /// Node name (the `node` label).
    pub node: &'a str,
    /// The node loop's counts.
    pub stats: &'a NodeStats,
    /// Its uploader.
    pub uploader: &'a Uploader,
}

/// The exposition text of `agents`, each metric family once with a `node` label per agent.
pub fn render(agents: &[AgentMetrics<'_>]) -> String {
    let mut out = String::new();
    let value = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut family = |name: &str, kind: &str, help: &str, sample: &dyn Fn(&AgentMetrics) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for agent in agents {
            let node = agent.node.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", sample(agent));
        }
    };
    family(
        "caracal_agent_verdicts_total",
        "counter",
        "NFLOG verdicts read.",
        &|a| value(&a.stats.verdicts),
    );
    family(
        "caracal_agent_verdicts_rejected_total",
        "counter",
        "NFLOG packets whose prefix or headers did not parse.",
        &|a| value(&a.stats.bad_verdicts),
    );
    family(
        "caracal_agent_unknown_tags_total",
        "counter",
        "Verdicts naming another ruleset generation or an unknown rule tag.",
        &|a| value(&a.stats.unknown_tags),
    );
    family(
        "caracal_agent_orphan_verdicts_total",
        "counter",
        "Allowing verdicts that never met a conntrack entry.",
        &|a| value(&a.stats.orphan_verdicts),
    );
    family(
        "caracal_agent_conntrack_entries_total",
        "counter",
        "Conntrack events and dump entries read.",
        &|a| value(&a.stats.connections),
    );
    family(
        "caracal_agent_tracked_connections",
        "gauge",
        "Connections assembly follows now.",
        &|a| value(&a.stats.tracked_connections),
    );
    family(
        "caracal_agent_dns_answers_total",
        "counter",
        "DNS answers snooped.",
        &|a| value(&a.stats.dns_answers),
    );
    family(
        "caracal_agent_dns_rejected_total",
        "counter",
        "Copied DNS packets that were not a usable answer.",
        &|a| value(&a.stats.bad_dns),
    );
    family(
        "caracal_agent_dns_names",
        "gauge",
        "(client, address) pairs the DNS cache holds.",
        &|a| value(&a.stats.dns_pairs),
    );
    family(
        "caracal_agent_dns_dropped_total",
        "counter",
        "DNS names not learned because the cache was full.",
        &|a| value(&a.stats.dns_dropped),
    );
    family(
        "caracal_agent_socket_errors_total",
        "counter",
        "Netlink socket errors (overruns among them).",
        &|a| value(&a.stats.errors),
    );
    family(
        "caracal_agent_flows_total",
        "counter",
        "Flow updates assembled.",
        &|a| value(&a.stats.flows),
    );
    family(
        "caracal_agent_upload_acknowledged_total",
        "counter",
        "Flow updates the server acknowledged.",
        &|a| value(&a.uploader.stats.acknowledged),
    );
    family(
        "caracal_agent_upload_rejected_total",
        "counter",
        "Flow updates the server refused.",
        &|a| value(&a.uploader.stats.rejected),
    );
    family(
        "caracal_agent_upload_dropped_total",
        "counter",
        "Flow updates dropped because the buffer was full while the server was away.",
        &|a| value(&a.uploader.stats.dropped),
    );
    family(
        "caracal_agent_upload_connect_failures_total",
        "counter",
        "Failed attempts to reach the server.",
        &|a| value(&a.uploader.stats.connect_failures),
    );
    family(
        "caracal_agent_upload_buffered_batches",
        "gauge",
        "Batches waiting for the server's acknowledgement.",
        &|a| a.uploader.pending() as u64,
    );
    out
}
