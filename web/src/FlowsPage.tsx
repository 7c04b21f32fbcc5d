// The flows page: history of the chosen range, then the live stream over SSE with pause and
// "N new flows"; a virtualized table (only visible rows are in the DOM), user columns, folding
// of the two reports of one connection, a detail drawer with both traces, CSV/JSON export.
import { useEffect, useMemo, useReducer, useRef, useState } from "react";
import { ApiError, type Flow, listFlows, streamFlows } from "./api";
import { FilterBar } from "./FilterBar";
import { FlowDetail } from "./FlowDetail";
import { bytes, clock, count, endpoint, pendingAction, time } from "./format";
import { ALL_COLUMNS, type Column, type View, filterOf, rangeBounds, rememberColumns } from "./view";

const ROW_HEIGHT = 26;
const HEAD_HEIGHT = 28;
const MAX_ROWS = 50_000;

const WIDTHS: Record<Column, string> = {
  time: "150px",
  source_namespace: "minmax(90px, 1fr)",
  source_name: "minmax(140px, 2fr)",
  source_labels: "minmax(140px, 2fr)",
  dest_namespace: "minmax(90px, 1fr)",
  dest_name: "minmax(140px, 2fr)",
  dest_labels: "minmax(140px, 2fr)",
  dest_port: "60px",
  proto: "60px",
  dest_service: "minmax(120px, 1fr)",
  dest_domains: "minmax(120px, 1fr)",
  reporter: "70px",
  action: "60px",
  pending: "70px",
  policies: "minmax(160px, 2fr)",
  bytes: "90px",
  packets: "80px",
  connections: "90px",
};

/** A row: a flow, or the two reports of one connection folded together. */
type Row = { flow: Flow; reporters: string };

function cell(column: Column, row: Row): { text: string; className?: string } {
  const f = row.flow;
  switch (column) {
    case "time":
      return { text: time(f.start_time) };
    case "source_namespace":
      return { text: f.source_namespace };
    case "source_name":
      return { text: f.source_name };
    case "source_labels":
      return { text: f.source_labels.join(", ") };
    case "dest_namespace":
      return { text: f.dest_namespace };
    case "dest_name":
      return { text: f.dest_name };
    case "dest_labels":
      return { text: f.dest_labels.join(", ") };
    case "dest_port":
      return { text: String(f.dest_port) };
    case "proto":
      return { text: f.proto };
    case "dest_service":
      return { text: f.dest_service_name === "-" ? "-" : `${endpoint(f.dest_service_namespace, f.dest_service_name)}:${f.dest_service_port}` };
    case "dest_domains":
      return { text: f.dest_domains.join(", ") || "-" };
    case "reporter":
      return { text: row.reporters };
    case "action":
      return { text: f.action, className: f.action };
    case "pending": {
      const pending = pendingAction(f);
      return { text: pending, className: pending === "-" ? undefined : pending };
    }
    case "policies":
      return { text: f.policies.enforced.map((h) => (h.kind === "eot" ? `eot:${h.tier}` : h.name)).join(" → ") };
    case "bytes":
      return { text: bytes(f.bytes_in + f.bytes_out) };
    case "packets":
      return { text: count(f.packets_in + f.packets_out) };
    case "connections":
      return { text: count(f.num_connections_started) };
  }
}

function foldKey(f: Flow): string {
  return [f.start_time, f.source_namespace, f.source_name, f.dest_namespace, f.dest_name, f.dest_port, f.proto, f.action].join("\u0000");
}

function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  URL.revokeObjectURL(url);
}

const CSV_FIELDS: (keyof Flow)[] = [
  "start_time", "end_time", "source_type", "source_namespace", "source_name", "source_labels", "source_ips",
  "dest_type", "dest_namespace", "dest_name", "dest_labels", "dest_ips", "dest_port", "proto",
  "dest_service_namespace", "dest_service_name", "dest_service_port_name", "dest_service_port", "dest_domains",
  "reporter", "action", "bytes_in", "bytes_out", "packets_in", "packets_out",
  "num_connections_started", "num_connections_completed", "num_connections_live",
];

export function toCsv(flows: Flow[]): string {
  const escape = (value: unknown) => {
    const text = Array.isArray(value) ? value.join(" ") : String(value);
    // A leading = + - @ would be a formula in a spreadsheet: quote it as text.
    const safe = /^[=+\-@]/.test(text) ? `'${text}` : text;
    return /[",\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
  };
  const lines = [CSV_FIELDS.join(",") + ",enforced,pending"];
  for (const f of flows) {
    const trace = (hits: Flow["policies"]["enforced"]) =>
      hits.map((h) => `${h.policy_index}|${h.tier}|${h.kind}:${h.namespace ? h.namespace + "/" : ""}${h.name}|${h.action}|${h.rule_index}`).join(";");
    lines.push([...CSV_FIELDS.map((k) => escape(f[k])), escape(trace(f.policies.enforced)), escape(trace(f.policies.pending))].join(","));
  }
  return lines.join("\n") + "\n";
}

export function FlowsPage({
  view,
  setView,
  now,
}: {
  view: View;
  setView: (update: (view: View) => View, push?: boolean) => void;
  now: number;
}) {
  const rows = useRef<Flow[]>([]);
  const held = useRef<Flow[]>([]);
  const incoming = useRef<Flow[]>([]);
  const [version, redraw] = useReducer((x: number) => x + 1, 0);
  const [paused, setPaused] = useState(false);
  const pausedRef = useRef(paused);
  const [heldCount, setHeldCount] = useState(0);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string>();
  const [streamState, setStreamState] = useState<string>("");
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const scroller = useRef<HTMLDivElement>(null);
  const filter = filterOf(view);
  const live = view.range === "live";
  // The range's bounds are fixed when the view changes, not on every clock tick.
  const bounds = useMemo(() => rangeBounds(view.range, now), [view.range, filter]);

  pausedRef.current = paused;

  useEffect(() => {
    const abort = new AbortController();
    let close = () => {};
    rows.current = [];
    held.current = [];
    incoming.current = [];
    setHeldCount(0);
    setLoading(true);
    setError(undefined);
    redraw();
    (async () => {
      try {
        const page = await listFlows(filter, bounds, live ? 2000 : 10_000, abort.signal);
        rows.current = page.items;
        setLoading(false);
        redraw();
        if (!live) return;
        close = streamFlows(
          filter,
          (flow) => incoming.current.push(flow),
          (state) => setStreamState(state),
        );
      } catch (caught) {
        if (abort.signal.aborted) return;
        setLoading(false);
        setError(caught instanceof ApiError ? `The server refused this view: ${caught.message}` : `Cannot reach the server: ${(caught as Error).message}`);
      }
    })();
    // Streamed flows are applied in batches, a few times a second, to keep frames short.
    const timer = window.setInterval(() => {
      if (!incoming.current.length) return;
      const batch = incoming.current.reverse();
      incoming.current = [];
      if (pausedRef.current) {
        held.current = batch.concat(held.current).slice(0, MAX_ROWS);
        setHeldCount(held.current.length);
        return;
      }
      rows.current = batch.concat(rows.current).slice(0, MAX_ROWS);
      redraw();
    }, 250);
    return () => {
      abort.abort();
      close();
      window.clearInterval(timer);
    };
  }, [filter, live, bounds]);

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const observer = new ResizeObserver(() => setHeight(element.clientHeight));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const resume = () => {
    rows.current = held.current.concat(rows.current).slice(0, MAX_ROWS);
    held.current = [];
    setHeldCount(0);
    setPaused(false);
    redraw();
  };

  const shown: Row[] = useMemo(() => {
    if (!view.fold) return rows.current.map((flow) => ({ flow, reporters: flow.reporter }));
    const byKey = new Map<string, Row>();
    const out: Row[] = [];
    for (const flow of rows.current) {
      const key = foldKey(flow);
      const existing = byKey.get(key);
      if (existing) {
        if (!existing.reporters.includes(flow.reporter)) existing.reporters = "src+dst";
        continue;
      }
      const row = { flow, reporters: flow.reporter };
      byKey.set(key, row);
      out.push(row);
    }
    return out;
    // `version` changes whenever `rows` (a ref) does.
  }, [version, view.fold]);

  const selected = view.selected === undefined ? undefined : rows.current.find((f) => f.id === view.selected);
  const first = Math.max(0, Math.floor((scrollTop - HEAD_HEIGHT) / ROW_HEIGHT) - 10);
  const last = Math.min(shown.length, first + Math.ceil(height / ROW_HEIGHT) + 20);
  const template = view.columns.map((c) => WIDTHS[c]).join(" ");

  const setColumns = (columns: Column[]) => {
    rememberColumns(columns);
    setView((v) => ({ ...v, columns }));
  };

  return (
    <>
      <FilterBar view={view} setView={setView} error={error} />
      <div className="toolbar" aria-label="Table controls">
        {live && (
          <>
            <button type="button" aria-pressed={paused} onClick={() => (paused ? resume() : setPaused(true))} data-testid="pause">
              {paused ? "Resume" : "Pause"}
            </button>
            {paused && heldCount > 0 && (
              <button type="button" className="new-flows" onClick={resume} data-testid="new-flows">
                {count(heldCount)} new flows
              </button>
            )}
          </>
        )}
        <button type="button" aria-pressed={view.fold} onClick={() => setView((v) => ({ ...v, fold: !v.fold }), true)} title="Show the src and dst reports of one connection as one row">
          Fold src/dst
        </button>
        <ColumnChooser columns={view.columns} setColumns={setColumns} />
        <span className="spacer" />
        <button type="button" onClick={() => download("caracal-flows.csv", "text/csv", toCsv(shown.map((r) => r.flow)))}>
          Export CSV
        </button>
        <button type="button" onClick={() => download("caracal-flows.json", "application/json", JSON.stringify(shown.map((r) => r.flow), null, 1))}>
          Export JSON
        </button>
      </div>
      <div className="layout">
        <div className="grow">
          <div
            className="table"
            ref={scroller}
            role="grid"
            aria-label="Flows"
            aria-rowcount={shown.length + 1}
            data-testid="flow-table"
            onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
          >
            <div style={{ height: HEAD_HEIGHT + shown.length * ROW_HEIGHT, position: "relative" }}>
              <div className="head" role="row" style={{ gridTemplateColumns: template }}>
                {view.columns.map((c) => (
                  <div className="cell" role="columnheader" key={c}>
                    {ALL_COLUMNS[c]}
                  </div>
                ))}
              </div>
              {shown.slice(first, last).map((row, offset) => {
                const index = first + offset;
                return (
                  <div
                    key={`${row.flow.id}:${row.flow.reporter}:${index}`}
                    className="row"
                    role="row"
                    aria-rowindex={index + 2}
                    aria-selected={row.flow.id === view.selected}
                    tabIndex={0}
                    data-testid="flow-row"
                    style={{ top: HEAD_HEIGHT + index * ROW_HEIGHT, gridTemplateColumns: template }}
                    onClick={() => setView((v) => ({ ...v, selected: row.flow.id }))}
                    onKeyDown={(e) => {
                      if (e.key === "Enter") setView((v) => ({ ...v, selected: row.flow.id }));
                    }}
                  >
                    {view.columns.map((c) => {
                      const { text, className } = cell(c, row);
                      return (
                        <div className={`cell ${className ?? ""}`} role="gridcell" key={c} title={text}>
                          {text}
                        </div>
                      );
                    })}
                  </div>
                );
              })}
            </div>
            {!loading && !error && shown.length === 0 && (
              <div className="notice" style={{ position: "absolute", top: 40, left: 0, right: 0 }}>
                <strong>No flows {filter ? "match this filter" : "yet"}</strong>
                {filter
                  ? "Remove a chip or widen the time range."
                  : live
                    ? "Flows appear when agents or Felix report them; buckets close every 15 seconds."
                    : "Nothing was recorded in this range; try a more recent one."}
              </div>
            )}
            {loading && (
              <div className="notice" style={{ position: "absolute", top: 40, left: 0, right: 0 }}>
                Loading flows…
              </div>
            )}
          </div>
          <div className="status-line" data-testid="status-line">
            <span data-testid="row-count">{count(shown.length)} rows</span>
            {live ? <span>live{streamState === "error" ? " · reconnecting" : streamState === "lagged" ? " · fell behind, reload" : ""}</span> : <span>history</span>}
            {paused && <span>paused: the table holds still</span>}
            <span>filter: {filter || "none"}</span>
            {shown.length > 0 && <span>newest {clock(shown[0].flow.end_time)}</span>}
          </div>
        </div>
        {view.selected !== undefined && (
          <aside className="drawer" aria-label="Flow details" data-testid="drawer">
            <h2>
              Flow details
              <button type="button" aria-label="Close details" onClick={() => setView((v) => ({ ...v, selected: undefined }))}>
                ×
              </button>
            </h2>
            {selected ? <FlowDetail flow={selected} /> : <p>Flow {view.selected} is not in the current view (it may have aged out of the range).</p>}
          </aside>
        )}
      </div>
    </>
  );
}

function ColumnChooser({ columns, setColumns }: { columns: Column[]; setColumns: (columns: Column[]) => void }) {
  const all = Object.keys(ALL_COLUMNS) as Column[];
  const move = (column: Column, by: number) => {
    const index = columns.indexOf(column);
    const target = index + by;
    if (index < 0 || target < 0 || target >= columns.length) return;
    const next = [...columns];
    [next[index], next[target]] = [next[target], next[index]];
    setColumns(next);
  };
  return (
    <details className="columns">
      <summary>Columns</summary>
      <div style={{ position: "absolute", zIndex: 5, background: "var(--panel)", border: "1px solid var(--line)", padding: 8, borderRadius: 4 }}>
        {[...columns, ...all.filter((c) => !columns.includes(c))].map((column) => (
          <div key={column}>
            <label>
              <input
                type="checkbox"
                checked={columns.includes(column)}
                onChange={(e) => setColumns(e.target.checked ? [...columns, column] : columns.filter((c) => c !== column))}
              />{" "}
              {ALL_COLUMNS[column]}
            </label>{" "}
            {columns.includes(column) && (
              <>
                <button type="button" aria-label={`Move ${ALL_COLUMNS[column]} left`} onClick={() => move(column, -1)}>
                  ↑
                </button>
                <button type="button" aria-label={`Move ${ALL_COLUMNS[column]} right`} onClick={() => move(column, 1)}>
                  ↓
                </button>
              </>
            )}
          </div>
        ))}
      </div>
    </details>
  );
}
