// The alerts page: what the alerts API returns, with evidence, links into the graph and the
// table pre-filtered, and acknowledge / dismiss. Without detection on the server it says so.
import { useEffect, useState } from "react";
import { type Alert, alerts as fetchAlerts, setAlertState } from "./api";
import { time } from "./format";
import type { View } from "./view";

export function AlertsPage({ setView }: { setView: (update: (view: View) => View, push?: boolean) => void }) {
  const [items, setItems] = useState<Alert[] | null>();
  const [error, setError] = useState<string>();
  const [open, setOpen] = useState<string>();
  const [version, setVersion] = useState(0);

  useEffect(() => {
    const abort = new AbortController();
    fetchAlerts(abort.signal)
      .then((result) => {
        setItems(result);
        setError(undefined);
      })
      .catch((caught) => !abort.signal.aborted && setError((caught as Error).message));
    const timer = window.setInterval(() => setVersion((v) => v + 1), 10_000);
    return () => {
      abort.abort();
      window.clearInterval(timer);
    };
  }, [version]);

  const act = async (id: string, action: "acknowledge" | "dismiss") => {
    try {
      await setAlertState(id, action);
      setVersion((v) => v + 1);
    } catch (caught) {
      setError((caught as Error).message);
    }
  };

  if (error) {
    return (
      <div className="notice" role="alert">
        <strong>Alerts could not be loaded</strong>
        {error}. Check that the server is running; the page retries every 10 seconds.
      </div>
    );
  }
  if (items === undefined) return <div className="notice">Loading alerts…</div>;
  if (items === null) {
    return (
      <div className="notice" data-testid="alerts-unavailable">
        <strong>Threat detection is not running on this server</strong>
        This server has no alerts API, so there is nothing to show. Start it with detection rules and feeds (`--rules`, `--feeds`) to get alerts here.
      </div>
    );
  }
  if (items.length === 0) {
    return (
      <div className="notice" data-testid="alerts-empty">
        <strong>No alerts</strong>
        Detection is running and nothing has been raised in the retained window.
      </div>
    );
  }
  return (
    <div className="alerts" role="list" aria-label="Alerts">
      {items.map((alert) => (
        <div className="alert" role="listitem" key={alert.id}>
          <div style={{ display: "flex", gap: 8, alignItems: "center" }}>
            <strong className={alert.severity === "high" || alert.severity === "critical" ? "deny" : undefined}>{alert.severity ?? "alert"}</strong>
            <span>{alert.title ?? alert.detector ?? alert.id}</span>
            <span className="pass">{alert.time ? time(alert.time) : ""}</span>
            <span className="pass">{alert.state ?? ""}</span>
            <span className="spacer" />
            <button type="button" onClick={() => setOpen(open === alert.id ? undefined : alert.id)} aria-expanded={open === alert.id}>
              Details
            </button>
            {alert.filter && (
              <>
                <button type="button" onClick={() => setView((v) => ({ ...v, page: "flows", chips: [], expression: alert.filter!, selected: undefined }), true)}>
                  Flows
                </button>
                <button type="button" onClick={() => setView((v) => ({ ...v, page: "graph", chips: [], expression: alert.filter!, selected: undefined }), true)}>
                  Graph
                </button>
              </>
            )}
            <button type="button" onClick={() => act(alert.id, "acknowledge")}>
              Acknowledge
            </button>
            <button type="button" onClick={() => act(alert.id, "dismiss")}>
              Dismiss
            </button>
          </div>
          {open === alert.id && (
            <div>
              <p>{alert.description}</p>
              <pre style={{ whiteSpace: "pre-wrap" }}>{JSON.stringify({ entities: alert.entities, evidence: alert.evidence }, null, 2)}</pre>
            </div>
          )}
        </div>
      ))}
    </div>
  );
}
