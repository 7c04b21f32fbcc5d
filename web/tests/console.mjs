// Browser tests of the console in Debian's Chromium, driven by playwright-core (no browser
// download). Usage: node tests/console.mjs BASE_URL SCREENSHOT_DIR
// The server behind BASE_URL is fed by the simulator and holds one flow whose labels and
// name are HTML/script injections; see crates/server/tests/it/console.rs.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node tests/console.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const failures = [];
const step = async (name, body) => {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}: ${error.stack ?? error}`);
  }
};

const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(String(error)));
await page.addInitScript(() => {
  window.__xss = undefined;
});
const rowCount = async (p = page) => Number((await p.getByTestId("row-count").textContent()).replace(/[^0-9]/g, ""));

await step("rows stream in", async () => {
  await page.goto(`${base}/flows`);
  await page.getByTestId("flow-row").first().waitFor({ timeout: 30_000 });
  assert.match(await page.getByTestId("cluster").innerText(), /cluster default/);
  const before = await rowCount();
  assert.ok(before > 0);
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="row-count"]').textContent.replace(/[^0-9]/g, "")) > n,
    before,
    { timeout: 40_000 },
  );
  await page.screenshot({ path: `${shots}/flows.png` });
});

await step("pause holds the table still and counts what arrives", async () => {
  await page.getByTestId("pause").click();
  const frozen = await page.getByTestId("flow-table").innerText();
  const count = await rowCount();
  await page.getByTestId("new-flows").waitFor({ timeout: 40_000 });
  assert.equal(await page.getByTestId("flow-table").innerText(), frozen);
  assert.equal(await rowCount(), count);
  await page.getByTestId("new-flows").click();
  assert.ok((await rowCount()) > count);
});

let namespace;
await step("filters narrow rows and update the URL", async () => {
  const firstRow = page.getByTestId("flow-row").first();
  namespace = (await firstRow.locator('[role="gridcell"]').nth(1).innerText()).trim();
  const total = await rowCount();
  await page.locator("#chip-field").selectOption("namespace");
  await page.locator("#chip-value").fill(namespace);
  await page.locator("#chip-value").press("Enter");
  await page.getByTestId("chip").first().waitFor();
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="row-count"]').textContent.replace(/[^0-9]/g, "")) < n, total, { timeout: 15_000 });
  assert.match(page.url(), new RegExp(`chip=namespace%3A${encodeURIComponent(namespace)}`));
  const rows = await page.getByTestId("flow-row").evaluateAll((elements) => elements.slice(0, 20).map((e) => e.innerText));
  assert.ok(rows.length > 0);
  for (const row of rows) assert.ok(row.includes(namespace), `${row} mentions ${namespace}`);
});

await step("a shared URL restores the view", async () => {
  const shared = page.url();
  const other = await context.newPage();
  await other.goto(shared);
  await other.getByTestId("chip").first().waitFor({ timeout: 10_000 });
  assert.match(await other.getByTestId("chip").first().innerText(), new RegExp(namespace));
  await other.getByTestId("flow-row").first().waitFor({ timeout: 20_000 });
  assert.match(await other.getByTestId("status-line").innerText(), new RegExp(`source_namespace = "${namespace}"`));
  await other.close();
});

await step("the detail drawer shows both traces", async () => {
  await page.getByRole("button", { name: /Remove filter/ }).first().click();
  await page.locator("#expression").fill("pending.action = deny");
  await page.locator("#expression").press("Enter");
  await page.getByTestId("flow-row").first().waitFor({ timeout: 20_000 });
  await page.getByTestId("flow-row").first().click();
  const drawer = page.getByTestId("drawer");
  await drawer.waitFor();
  const enforced = await drawer.getByTestId("trace-enforced").innerText();
  const pending = await drawer.getByTestId("trace-pending").innerText();
  assert.match(enforced, /tier/);
  assert.match(pending, /deny/);
  assert.match(page.url(), /flow=\d+/);
  await page.screenshot({ path: `${shots}/flow-detail.png` });
});

await step("network strings are text, never markup", async () => {
  await page.goto(`${base}/flows?q=${encodeURIComponent('source_namespace = "xss"')}`);
  await page.getByTestId("flow-row").first().waitFor({ timeout: 30_000 });
  await page.getByTestId("flow-row").first().click();
  const drawer = page.getByTestId("drawer");
  await drawer.waitFor();
  const text = await drawer.innerText();
  assert.ok(text.includes("<script>window.__xss=1</script>"), text);
  assert.ok(text.includes('"><img src=x onerror=window.__xss=2>'), text);
  await page.waitForTimeout(500);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('img[src="x"]').count(), 0);
  assert.equal(await page.locator("script:not([src])").count(), 0);
});

await step("the graph renders, a namespace expands, a node click filters the flows", async () => {
  await page.goto(`${base}/graph`);
  await page.waitForFunction(() => /[1-9][0-9]* nodes/.test(document.querySelector('[data-testid="graph-stats"]').textContent), null, { timeout: 30_000 });
  const stats = await page.getByTestId("graph-stats").innerText();
  assert.match(stats, /[1-9][0-9]* edges/);
  const clickNode = async (id) => {
    const point = await page.evaluate((id) => {
      const cy = window.caracalGraph;
      const node = cy.getElementById(id);
      cy.center(node);
      const box = cy.container().getBoundingClientRect();
      const position = node.renderedPosition();
      return { x: box.left + position.x, y: box.top + position.y };
    }, id);
    await page.mouse.click(point.x, point.y);
  };
  const namespaceId = await page.evaluate(() => window.caracalGraph.nodes(".namespace").filter((n) => n.id() !== "ns:xss").first().id());
  assert.ok(namespaceId, "a collapsed namespace node");
  await clickNode(namespaceId);
  await page.waitForFunction((id) => window.caracalGraph.getElementById(id).isParent(), namespaceId, { timeout: 10_000 });
  const child = await page.evaluate((id) => window.caracalGraph.getElementById(id).children().first().id(), namespaceId);
  await page.screenshot({ path: `${shots}/graph.png` });
  await clickNode(child);
  await page.getByTestId("graph-panel").waitFor();
  await page.getByTestId("open-in-flows").click();
  await page.waitForURL(/\/flows\?/);
  await page.getByTestId("flow-row").first().waitFor({ timeout: 20_000 });
  const label = await page.evaluate(() => decodeURIComponent(new URL(location.href).searchParams.get("q")));
  assert.match(label, /_name ~ /);
  const name = label.match(/_name ~ "([^"]+)"/)[1];
  const rows = await page.getByTestId("flow-row").evaluateAll((elements) => elements.slice(0, 20).map((e) => e.innerText));
  for (const row of rows) assert.ok(row.includes(name), `${row} has ${name}`);
});

await step("the alerts page says plainly what the server offers", async () => {
  await page.goto(`${base}/alerts`);
  await page.getByText(/Threat detection is not running|No alerts|Alerts could not/).first().waitFor({ timeout: 10_000 });
  await page.screenshot({ path: `${shots}/alerts.png` });
});

await step("dark theme and the filter shortcut", async () => {
  await page.goto(`${base}/flows`);
  await page.getByRole("button", { name: /Switch to dark theme/ }).click();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
  await page.getByTestId("flow-row").first().waitFor({ timeout: 20_000 });
  await page.locator("body").press("/");
  assert.equal(await page.evaluate(() => document.activeElement.id), "expression");
  await page.screenshot({ path: `${shots}/flows-dark.png` });
  await page.getByRole("button", { name: /Switch to light theme/ }).click();
});

assert.deepEqual(pageErrors, [], "no script errors on any page");
await browser.close();
if (failures.length) {
  console.log(`${failures.length} browser test(s) failed: ${failures.join("; ")}`);
  process.exit(1);
}
console.log("all browser tests passed");
