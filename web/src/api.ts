// The console's only door to the server: the public HTTP API (/api/v1), typed. Every string
// in these records came from the network and is rendered as text, never as markup.

export type Hit = {
  kind: string;
  namespace: string;
  name: string;
  tier: string;
  action: "allow" | "deny" | "pass";
  policy_index: number;
  rule_index: number;
  trigger?: Hit;
};

export type Flow = {
  id: number;
  start_time: number;
  end_time: number;
  source_type: string;
  source_namespace: string;
  source_name: string;
  source_labels: string[];
  source_ips: string[];
  source_ips_truncated?: boolean;
  dest_type: string;
  dest_namespace: string;
  dest_name: string;
  dest_labels: string[];
  dest_ips: string[];
  dest_ips_truncated?: boolean;
  dest_port: number;
  dest_service_name: string;
  dest_service_namespace: string;
  dest_service_port_name: string;
  dest_service_port: number;
  dest_domains: string[];
  proto: string;
  reporter: "src" | "dst";
  action: "allow" | "deny";
  policies: { enforced: Hit[]; pending: Hit[] };
  bytes_in: number;
  bytes_out: number;
  packets_in: number;
  packets_out: number;
  num_connections_started: number;
  num_connections_completed: number;
  num_connections_live: number;
};

export type Page<T> = {
  meta: { total_results: number; total_pages: number; page: number; page_size: number; page_size_capped: boolean };
  items: T[];
};

export type GraphNode = { id: string; kind: string; namespace: string; name: string; parent?: string; bytes: number };
export type GraphEdge = {
  source: string;
  target: string;
  port: number;
  proto: string;
  action: "allow" | "deny";
  bytes: number;
  packets: number;
  connections: number;
  policies: string[];
};
export type Graph = { nodes: GraphNode[]; edges: GraphEdge[]; truncated: boolean };

export type Status = {
  version: string;
  cluster: string;
  now: number;
  started: number;
  oldest_bucket: number;
  current_bucket: number;
  keys: number;
  windows: number;
  memory_bytes: number;
};

/** An error the API answered with; its message is the server's own words. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export type TimeRange = { start?: number; end?: number };

function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, { signal, headers: { Accept: "application/json" } });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (typeof body?.error === "string") message = body.error;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(message, response.status);
  }
  return (await response.json()) as T;
}

export function listFlows(
  filter: string,
  range: TimeRange,
  pageSize: number,
  signal?: AbortSignal,
): Promise<Page<Flow>> {
  return get(`/api/v1/flows${query({ filter, start: range.start, end: range.end, page_size: pageSize })}`, signal);
}

export function filterHints(field: string, filter: string, signal?: AbortSignal): Promise<Page<{ value: string }>> {
  return get(`/api/v1/filter-hints${query({ field, filter, page_size: 50 })}`, signal);
}

export function graph(filter: string, range: TimeRange, group: string, signal?: AbortSignal): Promise<Graph> {
  return get(`/api/v1/graph${query({ filter, start: range.start, end: range.end, group, max_edges: 20000 })}`, signal);
}

export function status(signal?: AbortSignal): Promise<Status> {
  return get("/api/v1/status", signal);
}

/** Live flows over SSE; returns a function that closes the stream. */
export function streamFlows(
  filter: string,
  onFlow: (flow: Flow) => void,
  onState: (state: "open" | "error" | "lagged") => void,
): () => void {
  const source = new EventSource(`/api/v1/flows/stream${query({ filter })}`);
  source.onopen = () => onState("open");
  source.onerror = () => onState("error");
  source.onmessage = (event) => {
    try {
      onFlow(JSON.parse(event.data) as Flow);
    } catch {
      // A malformed event is skipped; the stream goes on.
    }
  };
  source.addEventListener("lagged", () => onState("lagged"));
  return () => source.close();
}

export type Alert = {
  id: string;
  time?: number;
  severity?: string;
  title?: string;
  detector?: string;
  description?: string;
  state?: string;
  entities?: Record<string, string>;
  evidence?: unknown;
  filter?: string;
};

/** Alerts, or null when this server has no alerts API (detection not running). */
export async function alerts(signal?: AbortSignal): Promise<Alert[] | null> {
  try {
    const page = await get<{ items: Alert[] }>("/api/v1/alerts", signal);
    return page.items;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

export async function setAlertState(id: string, action: "acknowledge" | "dismiss"): Promise<void> {
  const response = await fetch(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST" });
  if (!response.ok) throw new ApiError(`${action} failed: ${response.status}`, response.status);
}
