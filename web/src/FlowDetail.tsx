// A flow's every field, and its enforced and pending traces side by side, drawn as tiers →
// policies → rules with each verdict and the trigger of an end-of-tier.
import type { Flow, Hit } from "./api";
import { bytes, count, endpoint, hitName, kindName, time } from "./format";

function Tags({ values, empty = "none" }: { values: string[]; empty?: string }) {
  if (!values.length) return <span className="pass">{empty}</span>;
  return (
    <span className="tags">
      {values.map((value) => (
        <span className="tag" key={value}>
          {value}
        </span>
      ))}
    </span>
  );
}

function Trace({ title, hits, testId }: { title: string; hits: Hit[]; testId: string }) {
  const tiers: { tier: string; hits: Hit[] }[] = [];
  for (const hit of hits) {
    const tier = hit.tier || (hit.kind === "pro" ? "profiles" : "default");
    const last = tiers[tiers.length - 1];
    if (last && last.tier === tier) last.hits.push(hit);
    else tiers.push({ tier, hits: [hit] });
  }
  return (
    <div className="trace" data-testid={testId}>
      <h4>{title}</h4>
      {tiers.length === 0 && <div className="pass">no policy applied</div>}
      {tiers.map(({ tier, hits }, index) => (
        <div className="tier" key={`${tier}:${index}`}>
          <div className="tier-name">tier {tier}</div>
          {hits.map((hit) => (
            <div key={`${hit.policy_index}:${hit.kind}:${hit.name}`}>
              <div className="hit">
                <span className={hit.action}>{hit.action}</span> {hit.kind === "eot" ? "end of tier" : kindName(hit.kind)}{" "}
                {hit.kind === "eot" ? "" : hitName(hit)} <span className="rule">{hit.rule_index >= 0 ? `rule ${hit.rule_index}` : ""}</span>
              </div>
              {hit.trigger && (
                <div className="trigger">
                  triggered by {kindName(hit.trigger.kind)} {hitName(hit.trigger)} (no rule matched)
                </div>
              )}
            </div>
          ))}
        </div>
      ))}
    </div>
  );
}

export function FlowDetail({ flow }: { flow: Flow }) {
  const service =
    flow.dest_service_name === "-"
      ? "-"
      : `${endpoint(flow.dest_service_namespace, flow.dest_service_name)} port ${flow.dest_service_port_name} (${flow.dest_service_port})`;
  return (
    <>
      <dl className="fields">
        <dt>Time</dt>
        <dd>
          {time(flow.start_time)} – {time(flow.end_time).slice(11)} UTC
        </dd>
        <dt>Source</dt>
        <dd>
          {endpoint(flow.source_namespace, flow.source_name)} ({flow.source_type})
        </dd>
        <dt>Destination</dt>
        <dd>
          {endpoint(flow.dest_namespace, flow.dest_name)} ({flow.dest_type})
        </dd>
        <dt>Port / protocol</dt>
        <dd>
          {flow.dest_port}/{flow.proto}
        </dd>
        <dt>Service</dt>
        <dd>{service}</dd>
        <dt>Reporter</dt>
        <dd>{flow.reporter === "src" ? "src (the source's node, egress policy)" : "dst (the destination's node, ingress policy)"}</dd>
        <dt>Action</dt>
        <dd className={flow.action}>{flow.action}</dd>
        <dt>Bytes in / out</dt>
        <dd>
          {bytes(flow.bytes_in)} / {bytes(flow.bytes_out)}
        </dd>
        <dt>Packets in / out</dt>
        <dd>
          {count(flow.packets_in)} / {count(flow.packets_out)}
        </dd>
        <dt>Connections</dt>
        <dd>
          {count(flow.num_connections_started)} started, {count(flow.num_connections_completed)} completed, {count(flow.num_connections_live)} live
        </dd>
      </dl>
      <h3>Source labels</h3>
      <Tags values={flow.source_labels} />
      <h3>Destination labels</h3>
      <Tags values={flow.dest_labels} />
      <h3>Source IPs</h3>
      <Tags values={flow.source_ips} />
      {flow.source_ips_truncated && <div className="pass">more addresses were seen than are kept</div>}
      <h3>Destination IPs</h3>
      <Tags values={flow.dest_ips} />
      {flow.dest_ips_truncated && <div className="pass">more addresses were seen than are kept</div>}
      <h3>Destination domains</h3>
      <Tags values={flow.dest_domains} empty="no DNS answer seen" />
      <h3>Policy traces</h3>
      <div className="traces">
        <Trace title="Enforced (what the dataplane did)" hits={flow.policies.enforced} testId="trace-enforced" />
        <Trace title="Pending (with staged policies)" hits={flow.policies.pending} testId="trace-pending" />
      </div>
    </>
  );
}
