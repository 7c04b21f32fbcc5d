// The flow graph: the server aggregates flows into nodes and edges; namespaces are groups
// that expand into workloads (or pods), networks and network sets are nodes of their own;
// edges are coloured allow / deny / mixed and sized by bytes or connections. A click opens a
// side panel with the flows behind the node or edge, the policies seen and volume over time.
import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import { useEffect, useMemo, useRef, useState } from "react";
import { ApiError, type Flow, type Graph, graph as fetchGraph, listFlows } from "./api";
import { FilterBar } from "./FilterBar";
import { bytes, clock, count, endpoint } from "./format";
import { placeGroups } from "./layout";
import { type View, filterOf, quote, rangeBounds } from "./view";

type Selection = { kind: "node"; id: string; label: string; filter: string } | { kind: "edge"; label: string; filter: string; policies: string[]; ports: string[] };

/** The filter-language expression selecting one side of flows for a graph node id. */
function sideFilter(id: string, side: "source" | "dest"): string {
  const [kind, rest] = [id.slice(0, id.indexOf(":")), id.slice(id.indexOf(":") + 1)];
  if (kind === "ns") return `${side}_namespace = ${quote(rest)}`;
  if (kind === "net") return `${side}_name = ${quote(rest)} AND ${side}_type = net`;
  if (kind === "host") return `${side}_name = ${quote(rest)} AND ${side}_type = hep`;
  const slash = rest.indexOf("/");
  const namespace = rest.slice(0, slash);
  const name = rest.slice(slash + 1);
  if (kind === "wl") {
    const prefix = name.endsWith("*") ? name.slice(0, -1) : name;
    return `${side}_namespace = ${quote(namespace)} AND ${side}_name ~ ${quote(prefix)}`;
  }
  return `${side}_namespace = ${quote(namespace)} AND ${side}_name = ${quote(name)}`;
}

type Built = { elements: ElementDefinition[]; nodeCount: number; edgeCount: number };

function build(data: Graph, expanded: Set<string>, sizeBy: "bytes" | "connections", known: Map<string, { x: number; y: number }>): Built {
  const visible = new Map<string, string>();
  const nodes: ElementDefinition[] = [];
  const placed: { id: string; group: string }[] = [];
  const namespaces = new Map<string, { bytes: number; children: number }>();
  for (const node of data.nodes) {
    if (node.parent) {
      const entry = namespaces.get(node.parent) ?? { bytes: 0, children: 0 };
      entry.bytes += node.bytes;
      entry.children += 1;
      namespaces.set(node.parent, entry);
    }
  }
  for (const [id, info] of namespaces) {
    const name = id.slice(3);
    const open = expanded.has(id);
    nodes.push({
      data: { id, label: open ? name : `${name} (${info.children})`, kind: "namespace", open: open ? 1 : 0, weight: info.bytes },
      classes: open ? "group" : "namespace",
    });
    if (!open) placed.push({ id, group: "ns" });
  }
  for (const node of data.nodes) {
    if (node.parent && !expanded.has(node.parent)) {
      visible.set(node.id, node.parent);
      continue;
    }
    if (node.kind === "namespace") continue;
    visible.set(node.id, node.id);
    nodes.push({ data: { id: node.id, label: node.name, kind: node.kind, parent: node.parent, weight: node.bytes }, classes: node.kind });
    placed.push({ id: node.id, group: node.parent ?? "~outside" });
  }
  for (const id of namespaces.keys()) visible.set(id, id);
  const edges = new Map<string, { source: string; target: string; bytes: number; connections: number; actions: Set<string>; ports: Set<string>; policies: Set<string> }>();
  for (const edge of data.edges) {
    const source = visible.get(edge.source);
    const target = visible.get(edge.target);
    if (!source || !target) continue;
    const key = `${source}→${target}`;
    const entry = edges.get(key) ?? { source, target, bytes: 0, connections: 0, actions: new Set(), ports: new Set(), policies: new Set() };
    entry.bytes += edge.bytes;
    entry.connections += edge.connections;
    entry.actions.add(edge.action);
    entry.ports.add(`${edge.port}/${edge.proto}`);
    edge.policies.forEach((p) => entry.policies.add(p));
    edges.set(key, entry);
  }
  const maxWeight = Math.max(1, ...[...edges.values()].map((e) => (sizeBy === "bytes" ? e.bytes : e.connections)));
  const positions = placeGroups(placed, known);
  const elements: ElementDefinition[] = nodes.map((node) => ({ ...node, position: positions.get(node.data.id as string) }));
  for (const [key, edge] of edges) {
    const weight = sizeBy === "bytes" ? edge.bytes : edge.connections;
    const action = edge.actions.size > 1 ? "mixed" : [...edge.actions][0];
    elements.push({
      data: {
        id: key,
        source: edge.source,
        target: edge.target,
        action,
        width: 1 + 7 * (Math.log1p(weight) / Math.log1p(maxWeight)),
        ports: [...edge.ports].slice(0, 12).join(", "),
        portList: [...edge.ports],
        policies: [...edge.policies],
        bytes: edge.bytes,
        connections: edge.connections,
      },
      classes: action,
    });
  }
  return { elements, nodeCount: nodes.length, edgeCount: edges.size };
}

/** Fits the graph, but never zooms a small graph in so far that labels dwarf it. */
function fit(instance: Core) {
  instance.fit(undefined, 40);
  if (instance.zoom() > 1.3) {
    instance.zoom(1.3);
    instance.center();
  }
}

function style(dark: boolean): cytoscape.StylesheetJson {
  const text = dark ? "#e6e8eb" : "#1b1f24";
  return [
    { selector: "node", style: { label: "data(label)", "font-size": 10, color: text, "text-valign": "bottom", "text-margin-y": 3, width: 18, height: 18, "background-color": "#6b7785" } },
    { selector: "node.workload, node.pod", style: { "background-color": "#2f6db5" } },
    { selector: "node.namespace", style: { shape: "round-rectangle", width: 30, height: 22, "background-color": "#b4531b" } },
    { selector: "node.group", style: { shape: "round-rectangle", "background-opacity": 0.07, "background-color": "#b4531b", "border-width": 1, "border-color": "#b4531b", "text-valign": "top", "font-weight": "bold" } },
    { selector: "node.network", style: { shape: "diamond", "background-color": "#7a4fb5" } },
    { selector: "node.networkset", style: { shape: "hexagon", "background-color": "#3f8f7a" } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#f0913f" } },
    { selector: "node.match", style: { "border-width": 3, "border-color": "#e8b04c" } },
    { selector: "edge", style: { width: "data(width)", "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 0.7, opacity: 0.8 } },
    { selector: "edge.allow", style: { "line-color": "#2e9e57", "target-arrow-color": "#2e9e57" } },
    { selector: "edge.deny", style: { "line-color": "#d0443a", "target-arrow-color": "#d0443a" } },
    { selector: "edge.mixed", style: { "line-color": "#d39a2c", "target-arrow-color": "#d39a2c" } },
    { selector: "edge:selected", style: { opacity: 1, "overlay-opacity": 0.15 } },
    { selector: ".hidden", style: { display: "none" } },
  ];
}

export function GraphPage({ view, setView, now }: { view: View; setView: (update: (view: View) => View, push?: boolean) => void; now: number }) {
  const container = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  const positions = useRef(new Map<string, { x: number; y: number }>());
  const [data, setData] = useState<Graph>();
  const [error, setError] = useState<string>();
  const [expanded, setExpanded] = useState<Set<string>>(new Set());
  const [level, setLevel] = useState<"workload" | "pod">("workload");
  const [sizeBy, setSizeBy] = useState<"bytes" | "connections">("bytes");
  const [search, setSearch] = useState("");
  const [selection, setSelection] = useState<Selection>();
  const [hover, setHover] = useState<string>();
  const [renderMs, setRenderMs] = useState<number>();
  const filter = filterOf(view);
  const live = view.range === "live";
  // The range's bounds are fixed when the view changes, not on every clock tick.
  const bounds = useMemo(() => rangeBounds(view.range, now), [view.range, filter]);
  const dark = document.documentElement.dataset.theme === "dark";

  useEffect(() => {
    const abort = new AbortController();
    const load = async () => {
      try {
        const range = live ? { start: Math.floor(Date.now() / 1000) - 15 * 60 } : bounds;
        setData(await fetchGraph(filter, range, level, abort.signal));
        setError(undefined);
      } catch (caught) {
        if (abort.signal.aborted) return;
        setError(caught instanceof ApiError ? `The server refused this view: ${caught.message}` : `Cannot reach the server: ${(caught as Error).message}`);
      }
    };
    load();
    const timer = live ? window.setInterval(load, 15_000) : undefined;
    return () => {
      abort.abort();
      window.clearInterval(timer);
    };
  }, [filter, live, bounds, level]);

  useEffect(() => {
    if (!container.current) return;
    const instance = cytoscape({ container: container.current, style: style(dark), wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4 });
    cy.current = instance;
    (window as unknown as { caracalGraph?: Core }).caracalGraph = instance;
    instance.on("dragfree", "node", (event) => {
      positions.current.set(event.target.id(), { ...event.target.position() });
    });
    instance.on("mouseover", "edge", (event) => setHover(`${event.target.source().data("label")} → ${event.target.target().data("label")}: ${event.target.data("ports")}`));
    instance.on("mouseout", "edge", () => setHover(undefined));
    const resized = new ResizeObserver(() => instance.resize());
    resized.observe(container.current);
    return () => {
      resized.disconnect();
      instance.destroy();
      cy.current = null;
    };
  }, [dark]);

  const built = useMemo(() => (data ? build(data, expanded, sizeBy, positions.current) : undefined), [data, expanded, sizeBy]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance || !built) return;
    const started = performance.now();
    const first = instance.elements().length === 0;
    instance.batch(() => {
      const wanted = new Set(built.elements.map((e) => e.data.id as string));
      instance.elements().filter((e) => !wanted.has(e.id())).remove();
      for (const element of built.elements) {
        const existing = instance.getElementById(element.data.id as string);
        if (existing.nonempty()) {
          if (existing.isNode() && existing.data("parent") !== element.data.parent) {
            existing.remove();
            instance.add(element);
          } else {
            existing.data(element.data);
            existing.classes(element.classes as string);
          }
        } else {
          instance.add(element);
        }
      }
    });
    instance.nodes().forEach((node) => {
      positions.current.set(node.id(), { ...node.position() });
    });
    if (first) fit(instance);
    setRenderMs(Math.round(performance.now() - started));
  }, [built]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    const onTap = (event: cytoscape.EventObject) => {
      const target = event.target;
      if (target === instance) {
        setSelection(undefined);
        return;
      }
      if (target.isEdge()) {
        const source = target.source().id();
        const dest = target.target().id();
        setSelection({
          kind: "edge",
          label: `${target.source().data("label")} → ${target.target().data("label")}`,
          filter: `${sideFilter(source, "source")} AND ${sideFilter(dest, "dest")}`,
          policies: target.data("policies"),
          ports: target.data("portList"),
        });
        return;
      }
      const id: string = target.id();
      if (target.hasClass("namespace")) {
        setExpanded((current) => new Set(current).add(id));
      }
      setSelection({ kind: "node", id, label: target.data("label"), filter: `(${sideFilter(id, "source")}) OR (${sideFilter(id, "dest")})` });
    };
    const onDoubleTap = (event: cytoscape.EventObject) => {
      const target = event.target;
      if (target !== instance && target.isNode() && target.hasClass("group")) {
        setExpanded((current) => {
          const next = new Set(current);
          next.delete(target.id());
          return next;
        });
      }
    };
    instance.on("tap", onTap);
    instance.on("dbltap", onDoubleTap);
    return () => {
      instance.off("tap", onTap);
      instance.off("dbltap", onDoubleTap);
    };
  }, [dark]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.nodes().removeClass("match");
    if (!search.trim()) return;
    const matches = instance.nodes().filter((node) => String(node.data("label")).toLowerCase().includes(search.trim().toLowerCase()));
    matches.addClass("match");
    if (matches.nonempty()) instance.animate({ fit: { eles: matches, padding: 80 } }, { duration: 200 });
  }, [search, built]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.elements().removeClass("hidden");
    if (!view.focus) return;
    const focus = instance.getElementById(view.focus);
    if (focus.empty()) return;
    const keep = focus.closedNeighborhood().union(focus.closedNeighborhood().parents()).union(focus.parent());
    instance.elements().difference(keep).addClass("hidden");
  }, [view.focus, built]);

  return (
    <>
      <FilterBar view={view} setView={setView} error={error} />
      <div className="toolbar" aria-label="Graph controls">
        <label>
          Detail{" "}
          <select value={level} onChange={(e) => setLevel(e.target.value as "workload" | "pod")}>
            <option value="workload">workloads</option>
            <option value="pod">pods</option>
          </select>
        </label>
        <label>
          Edge size{" "}
          <select value={sizeBy} onChange={(e) => setSizeBy(e.target.value as "bytes" | "connections")}>
            <option value="bytes">bytes</option>
            <option value="connections">connections</option>
          </select>
        </label>
        <button type="button" onClick={() => setExpanded(new Set(data?.nodes.filter((n) => n.parent).map((n) => n.parent!) ?? []))}>
          Expand all
        </button>
        <button type="button" onClick={() => setExpanded(new Set())}>
          Collapse all
        </button>
        <label className="sr-only" htmlFor="graph-search">
          Search nodes
        </label>
        <input id="graph-search" placeholder="Search nodes" value={search} onChange={(e) => setSearch(e.target.value)} />
        <button
          type="button"
          aria-pressed={Boolean(view.focus)}
          disabled={!view.focus && selection?.kind !== "node"}
          onClick={() => setView((v) => ({ ...v, focus: v.focus ? undefined : selection?.kind === "node" ? selection.id : undefined }))}
        >
          {view.focus ? "Show all" : "Focus selected"}
        </button>
        <button type="button" onClick={() => cy.current && fit(cy.current)}>
          Fit
        </button>
        <span className="spacer" />
        <span className="health" data-testid="graph-stats">
          {built ? `${count(built.nodeCount)} nodes · ${count(built.edgeCount)} edges` : "loading…"}
          {renderMs !== undefined && ` · drawn in ${renderMs} ms`}
          {data?.truncated && " · edges cut to the largest 20,000"}
        </span>
      </div>
      <div className="layout">
        <div className="grow graph-area">
          <div className="cy" ref={container} data-testid="graph" role="img" aria-label="Flow graph: namespaces, workloads and networks with their connections" />
          {built && built.nodeCount === 0 && (
            <div className="notice" style={{ position: "absolute", top: 40, left: 0, right: 0 }}>
              <strong>No flows in this view</strong>
              {filter ? "Remove a chip or widen the time range." : "The graph fills in as flows arrive."}
            </div>
          )}
          <div className="legend" aria-label="Legend">
            <span style={{ color: "#2e9e57" }}>allow</span>
            <span style={{ color: "#d0443a" }}>deny</span>
            <span style={{ color: "#d39a2c" }}>mixed</span>
            {hover && <em data-testid="edge-hover">{hover}</em>}
          </div>
        </div>
        {selection && <SidePanel selection={selection} range={live ? { start: Math.floor(Date.now() / 1000) - 15 * 60 } : bounds} filter={filter} setView={setView} onClose={() => setSelection(undefined)} />}
      </div>
    </>
  );
}

function SidePanel({
  selection,
  range,
  filter,
  setView,
  onClose,
}: {
  selection: Selection;
  range: { start?: number; end?: number };
  filter: string;
  setView: (update: (view: View) => View, push?: boolean) => void;
  onClose: () => void;
}) {
  const [flows, setFlows] = useState<Flow[]>();
  const [error, setError] = useState<string>();
  const combined = filter ? `(${filter}) AND (${selection.filter})` : selection.filter;
  useEffect(() => {
    const abort = new AbortController();
    setFlows(undefined);
    listFlows(combined, range, 500, abort.signal)
      .then((page) => setFlows(page.items))
      .catch((caught) => !abort.signal.aborted && setError((caught as Error).message));
    return () => abort.abort();
    // Fetched again when the selection or filter changes; a live range moves on by itself.
  }, [combined]);
  const policies = useMemo(() => {
    const seen = new Set<string>(selection.kind === "edge" ? selection.policies : []);
    for (const flow of flows ?? []) for (const hit of flow.policies.enforced) seen.add(`${hit.tier || "default"} · ${hit.kind === "eot" ? "end of tier" : endpoint(hit.namespace, hit.name)} · ${hit.action}`);
    return [...seen].slice(0, 40);
  }, [flows, selection]);
  const volume = useMemo(() => {
    const byTime = new Map<number, number>();
    for (const flow of flows ?? []) byTime.set(flow.start_time, (byTime.get(flow.start_time) ?? 0) + flow.bytes_in + flow.bytes_out);
    return [...byTime.entries()].sort((a, b) => a[0] - b[0]);
  }, [flows]);
  const max = Math.max(1, ...volume.map(([, v]) => v));
  return (
    <aside className="drawer" aria-label="Selection details" data-testid="graph-panel">
      <h2>
        <span>{selection.label}</span>
        <button type="button" aria-label="Close panel" onClick={onClose}>
          ×
        </button>
      </h2>
      <button type="button" data-testid="open-in-flows" onClick={() => setView((v) => ({ ...v, page: "flows", expression: v.expression ? `(${v.expression}) AND (${selection.filter})` : selection.filter, selected: undefined }), true)}>
        Open these flows in the table
      </button>
      {selection.kind === "edge" && (
        <>
          <h3>Ports</h3>
          <div className="tags">
            {selection.ports.map((p) => (
              <span className="tag" key={p}>
                {p}
              </span>
            ))}
          </div>
        </>
      )}
      <h3>Volume over time</h3>
      {volume.length ? (
        <svg className="spark" width="420" height="60" role="img" aria-label="Bytes per bucket">
          {volume.map(([t, v], i) => (
            <rect key={t} x={(i * 420) / volume.length} width={Math.max(1, 420 / volume.length - 1)} y={60 - (v / max) * 58} height={(v / max) * 58} fill="var(--accent)">
              <title>{`${clock(t)}: ${bytes(v)}`}</title>
            </rect>
          ))}
        </svg>
      ) : (
        <div className="pass">{flows ? "no flows" : "loading…"}</div>
      )}
      <h3>Policies seen</h3>
      {policies.length ? policies.map((p) => <div key={p}>{p}</div>) : <div className="pass">none</div>}
      <h3>Flows ({flows ? count(flows.length) : "…"})</h3>
      {error && <div className="error">{error}</div>}
      <table style={{ width: "100%", fontSize: 12 }}>
        <thead>
          <tr>
            <th align="left">source</th>
            <th align="left">destination</th>
            <th align="left">port</th>
            <th align="left">action</th>
          </tr>
        </thead>
        <tbody>
          {(flows ?? []).slice(0, 60).map((f) => (
            <tr key={`${f.id}:${f.reporter}`}>
              <td>{endpoint(f.source_namespace, f.source_name)}</td>
              <td>{endpoint(f.dest_namespace, f.dest_name)}</td>
              <td>
                {f.dest_port}/{f.proto}
              </td>
              <td className={f.action}>{f.action}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </aside>
  );
}
