//! The simulated cluster: who runs where, with which labels and addresses, and which routes
//! carry traffic under which policy traces.

use std::net::{IpAddr, Ipv4Addr};

use caracal_flow::{Action, PolicyHit, PolicyTrace};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A deployment with its pods.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// Namespace.
    pub namespace: String,
    /// Deployment name.
    pub name: String,
    /// `name-<pod-template-hash>-`, the pods' generateName.
    pub generate_name: String,
    /// Pod names.
    pub pods: Vec<String>,
    /// Pod addresses, same order as `pods`.
    pub addresses: Vec<IpAddr>,
    /// Labels shared by its pods.
    pub labels: Vec<String>,
    /// Main listening port and its name.
    pub port: (u16, &'static str),
}

/// Where traffic goes: another deployment or an outside network.
#[derive(Clone, Debug)]
pub enum Target {
    /// A deployment, by index, through its Service when `via_service`.
    Deployment { index: usize, via_service: bool },
    /// An address outside the cluster: `pub` or `pvt`.
    External {
        name: &'static str,
        addresses: Vec<IpAddr>,
        domain: Option<&'static str>,
    },
    /// A global network set.
    NetworkSet {
        name: &'static str,
        addresses: Vec<IpAddr>,
    },
}

/// A route that carries traffic, with its policy traces per reporter.
#[derive(Clone, Debug)]
pub struct Route {
    /// Source deployment index.
    pub source: usize,
    /// Destination.
    pub target: Target,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub proto: &'static str,
    /// Verdict.
    pub action: Action,
    /// Relative share of connections.
    pub weight: u32,
    /// Typical bytes per connection, both ways.
    pub bytes: (u64, u64),
    /// Trace reported by the source node (egress), `None` when it is not a workload.
    pub egress: PolicyTrace,
    /// Trace reported by the destination node (ingress), when the destination is a workload.
    pub ingress: Option<PolicyTrace>,
    /// Only active in working hours (batch jobs use the inverse).
    pub batch: bool,
}

/// The whole simulated cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Node names.
    pub nodes: Vec<String>,
}

/// (namespace, name, tier label, (port, port name), replicas).
type DeploymentSpec = (
    &'static str,
    &'static str,
    &'static str,
    (u16, &'static str),
    usize,
);

const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix(rng: &mut SmallRng, length: usize) -> String {
    (0..length)
        .map(|_| HASH_ALPHABET[rng.gen_range(0..HASH_ALPHABET.len())] as char)
        .collect()
}

fn trace(enforced: &[&str], pending: &[&str]) -> PolicyTrace {
    let parse = |texts: &[&str]| {
        texts
            .iter()
            .map(|text| text.parse::<PolicyHit>().expect("built-in hit text"))
            .collect()
    };
    PolicyTrace {
        enforced: parse(enforced),
        pending: parse(pending),
    }
}

fn end_of_tier(index: i64, tier: &str, trigger: &str) -> PolicyHit {
    let mut hit: PolicyHit = format!("{index}|{tier}|eot:|deny|-1")
        .parse()
        .expect("built-in hit text");
    hit.trigger = Some(Box::new(trigger.parse().expect("built-in trigger text")));
    hit
}

impl Cluster {
    /// A cluster of `nodes` nodes; `seed` picks pod names and replica counts.
    pub fn generate(seed: u64, nodes: usize) -> Cluster {
        let mut rng = SmallRng::seed_from_u64(seed);
        let nodes: Vec<String> = (0..nodes.max(1))
            .map(|index| format!("node-{index}"))
            .collect();
        let specs: [DeploymentSpec; 12] = [
            ("ingress", "ingress-nginx", "edge", (443, "https"), 2),
            ("shop", "frontend", "web", (8080, "http"), 4),
            ("shop", "cart", "api", (8080, "http"), 3),
            ("shop", "catalog", "api", (8080, "http"), 3),
            ("shop", "checkout", "api", (8080, "http"), 2),
            ("shop", "payment", "api", (8443, "https"), 2),
            ("data", "postgres", "db", (5432, "postgres"), 2),
            ("data", "redis", "cache", (6379, "redis"), 2),
            (
                "monitoring",
                "prometheus",
                "observability",
                (9090, "web"),
                1,
            ),
            ("kube-system", "coredns", "dns", (53, "dns"), 2),
            ("batch", "report-job", "batch", (8080, "http"), 1),
            ("shop", "recommendations", "api", (8080, "grpc"), 2),
        ];
        let mut deployments = Vec::new();
        for (index, (namespace, name, tier, port, replicas)) in specs.into_iter().enumerate() {
            let replicas = replicas + rng.gen_range(0..=1);
            let hash = random_suffix(&mut rng, 10);
            let generate_name = format!("{name}-{hash}-");
            let pods: Vec<String> = (0..replicas)
                .map(|_| format!("{generate_name}{}", random_suffix(&mut rng, 5)))
                .collect();
            let addresses = (0..replicas)
                .map(|replica| {
                    IpAddr::V4(Ipv4Addr::new(
                        10,
                        244,
                        ((index + replica) % nodes.len()) as u8,
                        (index * 8 + replica + 2) as u8,
                    ))
                })
                .collect();
            let labels = vec![
                format!("app={name}"),
                format!("app.kubernetes.io/name={name}"),
                format!(
                    "app.kubernetes.io/part-of={}",
                    if namespace == "shop" {
                        "webshop"
                    } else {
                        namespace
                    }
                ),
                format!("pod-template-hash={hash}"),
                format!("tier={tier}"),
                format!("version=v{}", 1 + index % 3),
            ];
            deployments.push(Deployment {
                namespace: namespace.into(),
                name: name.into(),
                generate_name,
                pods,
                addresses,
                labels,
                port,
            });
        }
        let by_name = |name: &str| {
            deployments
                .iter()
                .position(|d| d.name == name)
                .expect("known deployment")
        };
        let (ingress, frontend, cart, catalog, checkout, payment) = (
            by_name("ingress-nginx"),
            by_name("frontend"),
            by_name("cart"),
            by_name("catalog"),
            by_name("checkout"),
            by_name("payment"),
        );
        let (postgres, redis, prometheus, coredns, report, recommendations) = (
            by_name("postgres"),
            by_name("redis"),
            by_name("prometheus"),
            by_name("coredns"),
            by_name("report-job"),
            by_name("recommendations"),
        );
        let internal = "0|security|gnp:security.pass-internal|pass|0";
        let egress_ok = |namespace: &str| {
            trace(
                &[
                    internal,
                    &format!("1|__PROFILE__|pro:kns.{namespace}|allow|0"),
                ],
                &[],
            )
        };
        let ingress_ok = |namespace: &str, policy: &str, rule: i64| {
            trace(
                &[
                    internal,
                    &format!("1|default|knp:{namespace}/{policy}|allow|{rule}"),
                ],
                &[],
            )
        };
        let to = |index: usize| Target::Deployment {
            index,
            via_service: true,
        };
        let route = |source, target, port, proto, weight, bytes, egress, ingress| Route {
            source,
            target,
            port,
            proto,
            action: Action::Allow,
            weight,
            bytes,
            egress,
            ingress,
            batch: false,
        };
        let mut routes = vec![
            route(
                ingress,
                to(frontend),
                8080,
                "tcp",
                40,
                (900, 24_000),
                egress_ok("ingress"),
                Some(ingress_ok("shop", "frontend-ingress", 0)),
            ),
            route(
                frontend,
                to(cart),
                8080,
                "tcp",
                25,
                (600, 2_000),
                egress_ok("shop"),
                Some(ingress_ok("shop", "cart-ingress", 0)),
            ),
            route(
                frontend,
                to(catalog),
                8080,
                "tcp",
                35,
                (500, 9_000),
                egress_ok("shop"),
                Some(ingress_ok("shop", "catalog-ingress", 0)),
            ),
            route(
                frontend,
                to(checkout),
                8080,
                "tcp",
                8,
                (1_200, 1_500),
                egress_ok("shop"),
                Some(ingress_ok("shop", "checkout-ingress", 0)),
            ),
            route(
                frontend,
                to(recommendations),
                8080,
                "tcp",
                12,
                (400, 3_000),
                egress_ok("shop"),
                Some(ingress_ok("shop", "recommendations-ingress", 0)),
            ),
            route(
                checkout,
                to(payment),
                8443,
                "tcp",
                6,
                (2_000, 800),
                egress_ok("shop"),
                Some(ingress_ok("shop", "payment-ingress", 0)),
            ),
            route(
                checkout,
                to(cart),
                8080,
                "tcp",
                6,
                (300, 700),
                egress_ok("shop"),
                Some(ingress_ok("shop", "cart-ingress", 0)),
            ),
            route(
                checkout,
                to(postgres),
                5432,
                "tcp",
                8,
                (1_500, 3_000),
                egress_ok("shop"),
                Some(ingress_ok("data", "postgres-ingress", 0)),
            ),
            route(
                catalog,
                to(postgres),
                5432,
                "tcp",
                20,
                (800, 40_000),
                egress_ok("shop"),
                Some(ingress_ok("data", "postgres-ingress", 0)),
            ),
            route(
                cart,
                to(redis),
                6379,
                "tcp",
                30,
                (150, 400),
                egress_ok("shop"),
                Some(ingress_ok("data", "redis-ingress", 0)),
            ),
            route(
                recommendations,
                to(redis),
                6379,
                "tcp",
                10,
                (150, 2_000),
                egress_ok("shop"),
                Some(ingress_ok("data", "redis-ingress", 1)),
            ),
        ];
        for source in [
            frontend,
            cart,
            catalog,
            checkout,
            payment,
            recommendations,
            report,
        ] {
            let namespace = deployments[source].namespace.clone();
            routes.push(route(
                source,
                to(coredns),
                53,
                "udp",
                10,
                (70, 130),
                egress_ok(&namespace),
                Some(ingress_ok("kube-system", "dns-ingress", 0)),
            ));
        }
        for target in [frontend, cart, catalog, checkout, payment, postgres, redis] {
            let namespace = deployments[target].namespace.clone();
            // A staged policy would cut Prometheus off from the data namespace: pending deny.
            let pending = if namespace == "data" {
                vec![
                    internal.parse().expect("hit"),
                    "1|default|snp:data/default.restrict-scrapes|deny|0"
                        .parse()
                        .expect("hit"),
                ]
            } else {
                vec![]
            };
            let mut ingress_trace = ingress_ok(&namespace, "allow-metrics", 0);
            if !pending.is_empty() {
                ingress_trace.pending = pending;
            }
            routes.push(route(
                prometheus,
                Target::Deployment {
                    index: target,
                    via_service: false,
                },
                9090,
                "tcp",
                3,
                (300, 6_000),
                egress_ok("monitoring"),
                Some(ingress_trace),
            ));
        }
        let mut report_route = route(
            report,
            to(postgres),
            5432,
            "tcp",
            15,
            (2_000, 400_000),
            egress_ok("batch"),
            Some(ingress_ok("data", "postgres-ingress", 1)),
        );
        report_route.batch = true;
        routes.push(report_route);
        let public_api: Vec<IpAddr> = (10..14)
            .map(|host| IpAddr::V4(Ipv4Addr::new(203, 0, 113, host)))
            .collect();
        routes.push(route(
            payment,
            Target::External {
                name: "pub",
                addresses: public_api,
                domain: Some("api.payments.example"),
            },
            443,
            "tcp",
            5,
            (1_800, 4_200),
            trace(
                &["0|security|gnp:security.allow-payment-provider|allow|0"],
                &[],
            ),
            None,
        ));
        routes.push(route(
            postgres,
            Target::NetworkSet {
                name: "backup-targets",
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20))],
            },
            22,
            "tcp",
            1,
            (50_000, 2_000),
            trace(&["0|security|gnp:security.allow-backups|allow|0"], &[]),
            None,
        ));
        let mut denied = |source: usize,
                          target: Target,
                          port: u16,
                          weight: u32,
                          egress: PolicyTrace,
                          ingress: Option<PolicyTrace>| {
            routes.push(Route {
                source,
                target,
                port,
                proto: "tcp",
                action: Action::Deny,
                weight,
                bytes: (60, 0),
                egress,
                ingress,
                batch: false,
            });
        };
        let crawler: Vec<IpAddr> = (40..60)
            .map(|host| IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)))
            .collect();
        denied(
            frontend,
            Target::External {
                name: "pub",
                addresses: crawler,
                domain: None,
            },
            443,
            4,
            trace(
                &["0|security|gnp:security.deny-internet-egress|deny|2"],
                &[],
            ),
            None,
        );
        let mut payment_deny = trace(&[internal], &[]);
        payment_deny.enforced.push(end_of_tier(
            1,
            "default",
            "1|default|knp:shop/payment-ingress|deny|-1",
        ));
        denied(
            cart,
            to(payment),
            8443,
            2,
            egress_ok("shop"),
            Some(payment_deny),
        );
        denied(
            report,
            Target::External {
                name: "pvt",
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 100, 0, 5))],
                domain: None,
            },
            3306,
            1,
            trace(
                &[
                    internal,
                    "1|platform|gnp:platform.restrict-batch-egress|deny|0",
                ],
                &[
                    internal,
                    "1|platform|gnp:platform.restrict-batch-egress|deny|0",
                ],
            ),
            None,
        );
        Cluster {
            deployments,
            routes,
            nodes,
        }
    }

    /// The node a pod of `deployment` runs on.
    pub fn node_of(&self, deployment: usize, replica: usize) -> &str {
        &self.nodes[(deployment + replica) % self.nodes.len()]
    }
}
