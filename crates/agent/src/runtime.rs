//! The agent's loop for one node: drains verdicts and connection events every poll, and at
//! every flush boundary (multiples of the flush interval) reads counters with a dump, folds
//! everything into flow updates and hands them to the uploader. The sockets are opened by the
//! caller in the node's network namespace; the loop itself runs on its own thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use caracal_flow::time::{Clock, SystemClock};

use crate::assembly::Assembler;
use crate::conntrack::ConntrackSocket;
use crate::dns::{parse_answer, DNS_PREFIX};
use crate::nflog::{parse_packet, parse_prefix, NflogSocket, Verdict};
use crate::upload::Uploader;

/// The kernel sockets of one node.
pub struct NodeSockets {
    /// NFLOG verdicts.
    pub nflog: NflogSocket,
    /// Conntrack new/destroy events.
    pub events: ConntrackSocket,
    /// Conntrack dumps.
    pub dumper: ConntrackSocket,
}

impl NodeSockets {
    /// Opens the sockets in the calling thread's network namespace: NFLOG `group`, copying
    /// as much of each packet as the ruleset logs DNS answers with, and conntrack.
    pub fn open(group: u16) -> Result<NodeSockets, crate::NflogError> {
        Ok(NodeSockets {
            nflog: NflogSocket::open(group, caracal_policy::DNS_SNAPLEN)?,
            events: ConntrackSocket::events()?,
            dumper: ConntrackSocket::dumper()?,
        })
    }
}

/// Counts of one node's loop.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Verdicts read.
    pub verdicts: AtomicU64,
    /// Verdicts that did not parse.
    pub bad_verdicts: AtomicU64,
    /// DNS answers read.
    pub dns_answers: AtomicU64,
    /// Copied DNS packets that were not a usable answer.
    pub bad_dns: AtomicU64,
    /// Conntrack events and dump entries read.
    pub connections: AtomicU64,
    /// Flow updates handed to the uploader.
    pub flows: AtomicU64,
    /// Socket errors.
    pub errors: AtomicU64,
    /// Verdicts naming another ruleset generation or an unknown tag (from assembly).
    pub unknown_tags: AtomicU64,
    /// Allowing verdicts that never met a conntrack entry (from assembly).
    pub orphan_verdicts: AtomicU64,
    /// Connections assembly tracks now.
    pub tracked_connections: AtomicU64,
    /// (client, address) pairs in the DNS cache now.
    pub dns_pairs: AtomicU64,
    /// DNS names not learned because the cache was full.
    pub dns_dropped: AtomicU64,
    /// Kernel id of the loop's thread, to read its CPU time from `/proc/self/task/<id>/stat`.
    pub thread_id: AtomicU64,
}

/// A new ruleset's generation and tags, and the evaluator of its policies.
type RulesetUpdate = (
    u32,
    Vec<caracal_policy::RuleTag>,
    Option<caracal_policy::Evaluator>,
);

/// A running node loop; stops when dropped.
pub struct NodeAgent {
    stop: Arc<AtomicBool>,
    ruleset: Arc<std::sync::Mutex<Option<RulesetUpdate>>>,
    thread: Option<JoinHandle<()>>,
    /// Counts.
    pub stats: Arc<NodeStats>,
}

fn unix_now() -> i64 {
    SystemClock.now()
}

impl NodeAgent {
    /// Starts the loop with a flush every `flush_interval` seconds.
    pub fn start(
        mut sockets: NodeSockets,
        mut assembler: Assembler,
        uploader: Uploader,
        flush_interval: i64,
    ) -> NodeAgent {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(NodeStats::default());
        let ruleset: Arc<std::sync::Mutex<Option<RulesetUpdate>>> = Arc::default();
        let (stopping, counts, replaced) = (stop.clone(), stats.clone(), ruleset.clone());
        let interval = flush_interval.max(1);
        let thread = std::thread::spawn(move || {
            if let Ok(link) = std::fs::read_link("/proc/thread-self") {
                let id = link
                    .file_name()
                    .and_then(|name| name.to_str())
                    .and_then(|name| name.parse().ok())
                    .unwrap_or(0);
                counts.thread_id.store(id, Ordering::Relaxed);
            }
            let mut window_start = unix_now().div_euclid(interval) * interval;
            loop {
                let stopped = stopping.load(Ordering::Relaxed);
                let now = unix_now();
                if let Some((generation, tags, evaluator)) =
                    replaced.lock().expect("ruleset slot").take()
                {
                    assembler.set_ruleset(generation, tags);
                    if let Some(evaluator) = evaluator {
                        assembler.set_evaluator(evaluator);
                    }
                }
                match sockets.nflog.receive() {
                    Ok(packets) => {
                        for (prefix, payload) in packets {
                            if prefix == DNS_PREFIX {
                                match parse_answer(&payload) {
                                    Ok(answer) => {
                                        counts.dns_answers.fetch_add(1, Ordering::Relaxed);
                                        assembler.on_dns(&answer, now);
                                    }
                                    Err(_) => {
                                        counts.bad_dns.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                continue;
                            }
                            match (parse_prefix(&prefix), parse_packet(&payload)) {
                                (Ok((generation, tag)), Ok(packet)) => {
                                    counts.verdicts.fetch_add(1, Ordering::Relaxed);
                                    assembler.on_verdict(
                                        &Verdict {
                                            generation,
                                            tag,
                                            packet,
                                        },
                                        now,
                                    );
                                }
                                _ => {
                                    counts.bad_verdicts.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                match sockets.events.receive() {
                    Ok(entries) => {
                        counts
                            .connections
                            .fetch_add(entries.len() as u64, Ordering::Relaxed);
                        for entry in &entries {
                            assembler.on_conntrack(entry, now);
                        }
                    }
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if now >= window_start + interval || stopped {
                    match sockets.dumper.dump_now() {
                        Ok(entries) => {
                            for entry in &entries {
                                assembler.on_conntrack(entry, now);
                            }
                        }
                        Err(_) => {
                            counts.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let end = if stopped {
                        now + 1
                    } else {
                        window_start + interval
                    };
                    let flows = assembler.flush(window_start, end);
                    counts
                        .flows
                        .fetch_add(flows.len() as u64, Ordering::Relaxed);
                    uploader.send(&flows);
                    window_start = end.div_euclid(interval) * interval;
                }
                let assembled = assembler.stats();
                counts
                    .unknown_tags
                    .store(assembled.unknown_tags, Ordering::Relaxed);
                counts
                    .orphan_verdicts
                    .store(assembled.orphan_verdicts, Ordering::Relaxed);
                counts
                    .dns_dropped
                    .store(assembled.dns_dropped, Ordering::Relaxed);
                counts
                    .tracked_connections
                    .store(assembler.tracked() as u64, Ordering::Relaxed);
                counts
                    .dns_pairs
                    .store(assembler.dns_pairs() as u64, Ordering::Relaxed);
                if stopped {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        NodeAgent {
            stop,
            ruleset,
            thread: Some(thread),
            stats,
        }
    }

    /// Uses the tags of a newly applied ruleset (and, when policies changed, a new evaluator
    /// for pending traces) from the next poll on.
    pub fn set_ruleset(
        &self,
        generation: u32,
        tags: Vec<caracal_policy::RuleTag>,
        evaluator: Option<caracal_policy::Evaluator>,
    ) {
        *self.ruleset.lock().expect("ruleset slot") = Some((generation, tags, evaluator));
    }

    /// Flushes what is pending and stops.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.finish();
    }
}
