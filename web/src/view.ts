// What a view is (page, filter chips, expression, time range, columns, folding, selection)
// and how it lives in the URL, so that a copied address opens the same view. Chips become the
// server's filter language: chips of one field are ORed, different fields ANDed.

export type Page = "flows" | "graph" | "alerts";

export const CHIP_FIELDS = {
  namespace: "Namespace",
  pod: "Pod / workload",
  label: "Label",
  port: "Port",
  protocol: "Protocol",
  action: "Action",
  pending: "Pending action",
  reporter: "Reporter",
  policy_kind: "Policy kind",
  policy_tier: "Policy tier",
  policy_namespace: "Policy namespace",
  policy_name: "Policy name",
} as const;

export type ChipField = keyof typeof CHIP_FIELDS;
export type Chip = { field: ChipField; value: string };

export type Range = "live" | "5m" | "15m" | "60m" | { start: number; end: number };

export const ALL_COLUMNS = {
  time: "Time",
  source_namespace: "Source namespace",
  source_name: "Source",
  source_labels: "Source labels",
  dest_namespace: "Dest namespace",
  dest_name: "Destination",
  dest_labels: "Dest labels",
  dest_port: "Port",
  proto: "Protocol",
  dest_service: "Service",
  dest_domains: "Domains",
  reporter: "Reporter",
  action: "Action",
  pending: "Pending",
  policies: "Policies",
  bytes: "Bytes",
  packets: "Packets",
  connections: "Connections",
} as const;

export type Column = keyof typeof ALL_COLUMNS;

export const DEFAULT_COLUMNS: Column[] = [
  "time",
  "source_namespace",
  "source_name",
  "dest_namespace",
  "dest_name",
  "dest_port",
  "proto",
  "reporter",
  "action",
  "pending",
  "bytes",
  "packets",
];

export type View = {
  page: Page;
  chips: Chip[];
  expression: string;
  range: Range;
  columns: Column[];
  fold: boolean;
  selected?: number;
  focus?: string;
};

const COLUMNS_KEY = "caracal.columns";

/** A value as a filter-language string literal. */
export function quote(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** One chip in the filter language, or an error naming what is wrong with its value. */
export function chipExpression(chip: Chip): string | { error: string } {
  const v = chip.value.trim();
  if (!v) return { error: `${CHIP_FIELDS[chip.field]}: empty value` };
  switch (chip.field) {
    case "namespace":
      return `(source_namespace = ${quote(v)} OR dest_namespace = ${quote(v)})`;
    case "pod":
      return `(source_name ~ ${quote(v)} OR dest_name ~ ${quote(v)})`;
    case "label": {
      const at = v.indexOf("=");
      if (at <= 0) return `(has(source_label ${quote(v)}) OR has(dest_label ${quote(v)}))`;
      const key = quote(v.slice(0, at).trim());
      const value = quote(v.slice(at + 1).trim());
      return `(source_label ${key} = ${value} OR dest_label ${key} = ${value})`;
    }
    case "port":
      if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) return { error: `Port: \`${v}\` is not a port number` };
      return `dest_port = ${v}`;
    case "protocol":
      return `proto = ${quote(v.toLowerCase())}`;
    case "action":
      return `action = ${quote(v.toLowerCase())}`;
    case "pending":
      return `pending.action = ${quote(v.toLowerCase())}`;
    case "reporter":
      return `reporter = ${quote(v.toLowerCase())}`;
    case "policy_kind":
      return `policy.kind = ${quote(v)}`;
    case "policy_tier":
      return `policy.tier = ${quote(v)}`;
    case "policy_namespace":
      return `policy.namespace = ${quote(v)}`;
    case "policy_name":
      return `policy.name = ${quote(v)}`;
  }
}

/** The whole filter of a view: chips grouped by field, then the expression box. */
export function filterOf(view: Pick<View, "chips" | "expression">): string {
  const groups = new Map<ChipField, string[]>();
  for (const chip of view.chips) {
    const expression = chipExpression(chip);
    if (typeof expression !== "string") continue;
    groups.set(chip.field, [...(groups.get(chip.field) ?? []), expression]);
  }
  const parts = [...groups.values()].map((alternatives) =>
    alternatives.length === 1 ? alternatives[0] : `(${alternatives.join(" OR ")})`,
  );
  const expression = view.expression.trim();
  if (expression) parts.push(`(${expression})`);
  return parts.join(" AND ");
}

/** Seconds since the epoch of a range, given the server's clock. */
export function rangeBounds(range: Range, now: number): { start?: number; end?: number } {
  if (range === "live") return { start: now - 15 * 60 };
  if (typeof range === "object") return range;
  const minutes = Number(range.slice(0, -1));
  return { start: now - minutes * 60 };
}

export function rangeText(range: Range): string {
  return typeof range === "object" ? `${range.start}-${range.end}` : range;
}

function parseRange(text: string | null): Range {
  if (text === "5m" || text === "15m" || text === "60m" || text === "live") return text;
  const match = text?.match(/^(\d+)-(\d+)$/);
  if (match && Number(match[1]) < Number(match[2])) return { start: Number(match[1]), end: Number(match[2]) };
  return "live";
}

function storedColumns(): Column[] {
  try {
    const stored = JSON.parse(localStorage.getItem(COLUMNS_KEY) ?? "null");
    if (Array.isArray(stored)) return stored.filter((c): c is Column => c in ALL_COLUMNS);
  } catch {
    // Unreadable storage: defaults.
  }
  return DEFAULT_COLUMNS;
}

export function rememberColumns(columns: Column[]): void {
  try {
    localStorage.setItem(COLUMNS_KEY, JSON.stringify(columns));
  } catch {
    // Storage refused (private mode): the URL still carries them.
  }
}

export function viewFromUrl(url: URL): View {
  const segment = url.pathname.replace(/^\/+/, "").split("/")[0];
  const page: Page = segment === "graph" || segment === "alerts" ? segment : "flows";
  const chips: Chip[] = url.searchParams
    .getAll("chip")
    .map((text) => {
      const at = text.indexOf(":");
      const field = text.slice(0, at) as ChipField;
      return { field, value: text.slice(at + 1) };
    })
    .filter((chip) => chip.field in CHIP_FIELDS);
  const columnText = url.searchParams.get("columns");
  const columns = columnText
    ? columnText.split(",").filter((c): c is Column => c in ALL_COLUMNS)
    : storedColumns();
  const selected = url.searchParams.get("flow");
  return {
    page,
    chips,
    expression: url.searchParams.get("q") ?? "",
    range: parseRange(url.searchParams.get("range")),
    columns: columns.length ? columns : DEFAULT_COLUMNS,
    fold: url.searchParams.get("fold") === "1",
    selected: selected ? Number(selected) : undefined,
    focus: url.searchParams.get("focus") ?? undefined,
  };
}

export function urlOfView(view: View): string {
  const search = new URLSearchParams();
  for (const chip of view.chips) search.append("chip", `${chip.field}:${chip.value}`);
  if (view.expression) search.set("q", view.expression);
  if (view.range !== "live") search.set("range", rangeText(view.range));
  search.set("columns", view.columns.join(","));
  if (view.fold) search.set("fold", "1");
  if (view.selected !== undefined) search.set("flow", String(view.selected));
  if (view.focus) search.set("focus", view.focus);
  return `/${view.page}?${search.toString()}`;
}
