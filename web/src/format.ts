// Display helpers: numbers, times, endpoints and policy hits as plain text.
import type { Flow, Hit } from "./api";

export function bytes(value: number): string {
  if (value < 1024) return `${value} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let scaled = value / 1024;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${scaled.toFixed(scaled < 10 ? 1 : 0)} ${units[unit]}`;
}

export function count(value: number): string {
  return value.toLocaleString("en-US");
}

export function time(seconds: number): string {
  const date = new Date(seconds * 1000);
  return date.toISOString().replace("T", " ").slice(0, 19);
}

export function clock(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(11, 19);
}

const KIND_NAMES: Record<string, string> = {
  np: "Calico NetworkPolicy",
  gnp: "GlobalNetworkPolicy",
  snp: "StagedNetworkPolicy",
  sgnp: "StagedGlobalNetworkPolicy",
  sknp: "StagedKubernetesNetworkPolicy",
  knp: "Kubernetes NetworkPolicy",
  kcnp: "ClusterNetworkPolicy",
  pro: "Profile",
  eot: "End of tier",
};

export function kindName(kind: string): string {
  return KIND_NAMES[kind] ?? kind;
}

export function hitName(hit: Hit): string {
  if (hit.kind === "eot") return `end of tier ${hit.tier || "default"}`;
  return hit.namespace ? `${hit.namespace}/${hit.name}` : hit.name;
}

export function hitText(hit: Hit): string {
  return `${hit.tier || "default"} · ${kindName(hit.kind)} ${hitName(hit)} · rule ${hit.rule_index} · ${hit.action}`;
}

export function pendingAction(flow: Flow): string {
  const pending = flow.policies.pending;
  if (!pending.length) return "-";
  const last = pending[pending.length - 1];
  return last.action === "pass" ? "-" : last.action;
}

export function endpoint(namespace: string, name: string): string {
  return namespace && namespace !== "-" ? `${namespace}/${name}` : name;
}
