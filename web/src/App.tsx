// The console's shell: header (cluster, pages, time range, server health, theme), the view
// kept in the URL, and the page it shows.
import { useCallback, useEffect, useState } from "react";
import { status, type Status } from "./api";
import { count } from "./format";
import { FlowsPage } from "./FlowsPage";
import { GraphPage } from "./GraphPage";
import { AlertsPage } from "./AlertsPage";
import { type Range, type View, rangeText, urlOfView, viewFromUrl } from "./view";

type Health = { state: "loading" } | { state: "ok"; status: Status } | { state: "down"; message: string };

function useTheme(): [string, () => void] {
  const [theme, setTheme] = useState(() => {
    const stored = localStorage.getItem("caracal.theme");
    if (stored === "dark" || stored === "light") return stored;
    return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  });
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("caracal.theme", theme);
  }, [theme]);
  return [theme, () => setTheme((t) => (t === "dark" ? "light" : "dark"))];
}

export function App() {
  const [view, setViewState] = useState<View>(() => viewFromUrl(new URL(window.location.href)));
  const [health, setHealth] = useState<Health>({ state: "loading" });
  const [theme, toggleTheme] = useTheme();

  const setView = useCallback((update: (view: View) => View, push = false) => {
    setViewState((current) => {
      const next = update(current);
      const url = urlOfView(next);
      if (url !== window.location.pathname + window.location.search) {
        if (push) window.history.pushState(null, "", url);
        else window.history.replaceState(null, "", url);
      }
      return next;
    });
  }, []);

  useEffect(() => {
    const back = () => setViewState(viewFromUrl(new URL(window.location.href)));
    window.addEventListener("popstate", back);
    return () => window.removeEventListener("popstate", back);
  }, []);

  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      try {
        const current = await status();
        if (!stopped) setHealth({ state: "ok", status: current });
      } catch (error) {
        if (!stopped) setHealth({ state: "down", message: String((error as Error).message ?? error) });
      }
    };
    poll();
    const timer = window.setInterval(poll, 5000);
    return () => {
      stopped = true;
      window.clearInterval(timer);
    };
  }, []);

  const now = health.state === "ok" ? health.status.now : Math.floor(Date.now() / 1000);
  const oldest = health.state === "ok" ? health.status.oldest_bucket : undefined;

  const navigate = (page: View["page"]) => (event: React.MouseEvent) => {
    event.preventDefault();
    setView((v) => ({ ...v, page, selected: undefined }), true);
  };

  return (
    <div className="app">
      <header className="top">
        <span className="brand">Caracal</span>
        <span data-testid="cluster" title="Cluster">
          cluster <strong>{health.state === "ok" ? health.status.cluster : "…"}</strong>
        </span>
        <nav aria-label="Pages">
          {(["flows", "graph", "alerts"] as const).map((page) => (
            <a
              key={page}
              href={urlOfView({ ...view, page })}
              aria-current={view.page === page ? "page" : undefined}
              onClick={navigate(page)}
            >
              {page[0].toUpperCase() + page.slice(1)}
            </a>
          ))}
        </nav>
        <span className="spacer" />
        <RangePicker range={view.range} now={now} oldest={oldest} onChange={(range) => setView((v) => ({ ...v, range }), true)} />
        <span className="health" role="status" aria-live="polite" data-testid="health">
          {health.state === "ok" && (
            <>
              <span className="dot ok" aria-hidden="true" /> server {health.status.version} · {count(health.status.keys)} flow keys
            </>
          )}
          {health.state === "down" && (
            <>
              <span className="dot bad" aria-hidden="true" /> server unreachable: {health.message}. Is `caracal server` running?
            </>
          )}
          {health.state === "loading" && (
            <>
              <span className="dot" aria-hidden="true" /> connecting…
            </>
          )}
        </span>
        <button type="button" onClick={toggleTheme} aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}>
          {theme === "dark" ? "Light" : "Dark"}
        </button>
      </header>
      <main>
        {view.page === "flows" && <FlowsPage view={view} setView={setView} now={now} />}
        {view.page === "graph" && <GraphPage view={view} setView={setView} now={now} />}
        {view.page === "alerts" && <AlertsPage setView={setView} />}
      </main>
    </div>
  );
}

function RangePicker({
  range,
  now,
  oldest,
  onChange,
}: {
  range: Range;
  now: number;
  oldest?: number;
  onChange: (range: Range) => void;
}) {
  const [custom, setCustom] = useState(false);
  const value = typeof range === "object" ? "custom" : range;
  const toLocal = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 16);
  const fromLocal = (text: string) => Math.floor(Date.parse(`${text}:00Z`) / 1000);
  const [from, setFrom] = useState(() => toLocal(typeof range === "object" ? range.start : now - 3600));
  const [to, setTo] = useState(() => toLocal(typeof range === "object" ? range.end : now));
  return (
    <span className="range">
      <label htmlFor="range" className="sr-only">
        Time range
      </label>
      <select
        id="range"
        value={custom ? "custom" : value}
        onChange={(event) => {
          const chosen = event.target.value;
          if (chosen === "custom") setCustom(true);
          else {
            setCustom(false);
            onChange(chosen as Range);
          }
        }}
      >
        <option value="live">Live</option>
        <option value="5m">Last 5 min</option>
        <option value="15m">Last 15 min</option>
        <option value="60m">Last 60 min</option>
        <option value="custom">Custom…</option>
      </select>
      {(custom || typeof range === "object") && (
        <span>
          {" "}
          <label>
            from <input type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} />
          </label>{" "}
          <label>
            to <input type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} />
          </label>{" "}
          <button
            type="button"
            onClick={() => {
              const start = fromLocal(from);
              const end = fromLocal(to);
              if (start < end) onChange({ start, end });
            }}
          >
            Apply
          </button>
          {oldest !== undefined && <span className="health"> history from {toLocal(oldest).replace("T", " ")} UTC</span>}
          <span className="sr-only">{rangeText(range)}</span>
        </span>
      )}
    </span>
  );
}
