//! A node and its pods, wired like Calico's routed model: each pod has one address as /32 on
//! `eth0` and a default route via the link-local 169.254.1.1, whose neighbour entry is the MAC
//! of the host side of its veth (proxy ARP would need the node to route 169.254.1.1 somewhere,
//! and a lab node has no route out); the node routes the pod's /32 to that veth.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::{in_namespace, LabError, Namespace, Prefix};

/// A pod: its namespace, address and the host side of its veth.
#[derive(Debug)]
pub struct Pod {
    /// The pod's network namespace.
    pub namespace: Namespace,
    /// Its address.
    pub address: Ipv4Addr,
    /// The interface in the node's namespace that leads to it.
    pub host_interface: String,
}

/// A node: a namespace that forwards between its pods.
#[derive(Debug)]
pub struct Node {
    /// The node's network namespace.
    pub namespace: Namespace,
    /// Its pods.
    pub pods: Vec<Pod>,
    prefix: Prefix,
}

impl Node {
    /// The prefix of this node's lab.
    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// Creates the node namespace `<prefix>-<name>` with forwarding on.
    pub fn create(prefix: &Prefix, name: &str) -> Result<Node, LabError> {
        let namespace = Namespace::create(prefix, name)?;
        namespace.sysctl("net.ipv4.ip_forward", "1")?;
        // A first ruleset that uses conntrack loads it, so its sysctls exist; the policy
        // ruleset replaces this table later. Then counters and timestamps for the agent.
        namespace.exec_with_input(
            "nft",
            &["-f", "-"],
            "table inet caracal {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tct state established,related accept\n\t}\n}\n",
        )?;
        namespace.sysctl("net.netfilter.nf_conntrack_acct", "1")?;
        namespace.sysctl("net.netfilter.nf_conntrack_timestamp", "1")?;
        Ok(Node {
            namespace,
            pods: Vec::new(),
            prefix: prefix.clone(),
        })
    }

    /// Adds a pod `<prefix>-<name>` with `address`, routed through this node.
    pub fn add_pod(&mut self, name: &str, address: Ipv4Addr) -> Result<&Pod, LabError> {
        let index = self.pods.len();
        let namespace = Namespace::create(&self.prefix, name)?;
        let host_interface = format!("{}h{index}", self.prefix.as_str());
        let temporary = format!("{}t{index}", self.prefix.as_str());
        self.namespace.ip(&[
            "link",
            "add",
            &host_interface,
            "type",
            "veth",
            "peer",
            "name",
            &temporary,
        ])?;
        self.namespace
            .ip(&["link", "set", &temporary, "netns", namespace.name()])?;
        namespace.ip(&["link", "set", &temporary, "name", "eth0"])?;
        namespace.ip(&["addr", "add", &format!("{address}/32"), "dev", "eth0"])?;
        namespace.ip(&["link", "set", "eth0", "up"])?;
        namespace.ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ])?;
        namespace.ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ])?;
        self.namespace.ip(&["link", "set", &host_interface, "up"])?;
        let link = self
            .namespace
            .ip(&["-o", "link", "show", &host_interface])?;
        let mac = link
            .split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1)
            .ok_or_else(|| LabError::Command {
                command: format!("ip -o link show {host_interface}"),
                stderr: "no link/ether address".into(),
            })?
            .to_string();
        namespace.ip(&[
            "neigh",
            "replace",
            "169.254.1.1",
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
        self.namespace.ip(&[
            "route",
            "add",
            &format!("{address}/32"),
            "dev",
            &host_interface,
        ])?;
        self.pods.push(Pod {
            namespace,
            address,
            host_interface,
        });
        Ok(&self.pods[index])
    }

    /// Leaves the node and its pods running after this value is gone.
    pub fn keep(self) {
        let Node {
            namespace, pods, ..
        } = self;
        namespace.keep();
        for pod in pods {
            pod.namespace.keep();
        }
    }

    /// Replaces this node's nftables ruleset with `text` in one transaction.
    pub fn apply_nftables(&self, text: &str) -> Result<(), LabError> {
        self.namespace
            .exec_with_input("nft", &["-f", "-"], text)
            .map(|_| ())
    }
}

/// Applies an nftables ruleset (`nft -f -`, one transaction) inside the namespace `netns`.
pub fn apply_nftables_in(netns: &str, text: &str) -> Result<(), LabError> {
    crate::netns::exec_in(netns, "nft", &["-f", "-"], text).map(|_| ())
}

/// TCP listeners inside a pod that accept every connection and read it to the end (at most
/// 16 MiB, two seconds idle) until dropped; a connection that opens with an HTTP request line
/// gets its request read and a `200 OK`.
pub struct TcpListeners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TcpListeners {
    /// Listens on `ports` in the pod's namespace.
    pub fn start(pod: &Pod, ports: &[u16]) -> Result<TcpListeners, LabError> {
        Self::start_in(pod.namespace.name(), ports)
    }

    /// Listens on `ports` in the network namespace `netns`.
    pub fn start_in(netns: &str, ports: &[u16]) -> Result<TcpListeners, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in ports {
            let listener = in_namespace(netns, move || TcpListener::bind(("0.0.0.0", port)))?
                .map_err(|source| LabError::Io {
                    what: format!("listen on port {port}"),
                    source,
                })?;
            listener
                .set_nonblocking(true)
                .map_err(|source| LabError::Io {
                    what: "nonblocking listener".into(),
                    source,
                })?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            std::thread::spawn(move || drain(stream));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
        }
        Ok(TcpListeners { stop, threads })
    }
}

fn drain(mut stream: TcpStream) {
    use std::io::Read;
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 16 * 1024];
    let mut total = 0usize;
    while total < 16 << 20 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) if total == 0 && crate::apps::is_http_request(&buffer[..read]) => {
                crate::apps::answer_http(&mut stream, &mut buffer, read);
                return;
            }
            Ok(read) => total += read,
        }
    }
}

impl Drop for TcpListeners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Opens a TCP connection from inside `netns` to `target`, sends `bytes` bytes and closes it;
/// returns false when it could not connect within `timeout`.
pub fn tcp_send(
    netns: &str,
    target: SocketAddr,
    bytes: usize,
    timeout: Duration,
) -> Result<bool, LabError> {
    in_namespace(netns, move || {
        use std::io::Write;
        let Ok(mut stream) = TcpStream::connect_timeout(&target, timeout) else {
            return false;
        };
        let chunk = vec![0x5a_u8; bytes.min(64 * 1024)];
        let mut left = bytes;
        while left > 0 {
            let now = left.min(chunk.len());
            if stream.write_all(&chunk[..now]).is_err() {
                return false;
            }
            left -= now;
        }
        stream.shutdown(std::net::Shutdown::Both).is_ok()
    })
}

/// Whether a TCP connection from inside the namespace `netns` to `target` completes within
/// `timeout`.
pub fn tcp_connects(netns: &str, target: SocketAddr, timeout: Duration) -> Result<bool, LabError> {
    in_namespace(netns, move || {
        TcpStream::connect_timeout(&target, timeout).is_ok()
    })
}

impl Pod {
    /// Whether a TCP connection from this pod to `target` completes within `timeout`.
    pub fn connects(&self, target: SocketAddr, timeout: Duration) -> Result<bool, LabError> {
        tcp_connects(self.namespace.name(), target, timeout)
    }
}
