// Console figures in Debian's Chromium: long tasks and frame times on the live flows page
// while the server streams 1,000 flow updates/s, and the graph's render time at ~2,000 nodes.
// Usage: node bench/console.mjs BASE_URL   (bench/run.sh console starts the load)
import { createRequire } from "node:module";
const require = createRequire(new URL("../web/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const base = process.argv[2];
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
await page.addInitScript(() => {
  window.__long = [];
  window.__frames = [];
  new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__long.push(e.duration))).observe({ type: "longtask", buffered: true });
  let last = performance.now();
  const tick = (now) => {
    window.__frames.push(now - last);
    last = now;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
});
await page.goto(`${base}/flows`);
await page.getByTestId("flow-row").first().waitFor({ timeout: 60_000 });
await page.evaluate(() => {
  window.__long = [];
  window.__frames = [];
});
const seconds = 45;
const rowsBefore = Number((await page.getByTestId("row-count").textContent()).replace(/[^0-9]/g, ""));
await page.waitForTimeout(seconds * 1000);
const rowsAfter = Number((await page.getByTestId("row-count").textContent()).replace(/[^0-9]/g, ""));
const { long, frames } = await page.evaluate(() => ({ long: window.__long, frames: window.__frames }));
const sorted = [...frames].sort((a, b) => a - b);
const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
console.log(`flows page, ${seconds} s live: rows ${rowsBefore} -> ${rowsAfter} (${((rowsAfter - rowsBefore) / seconds).toFixed(0)} rows/s shown)`);
console.log(`  long tasks: ${long.length}, longest ${Math.max(0, ...long).toFixed(0)} ms`);
console.log(`  frames: ${frames.length}, p50 ${pct(50).toFixed(1)} ms, p95 ${pct(95).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms`);

for (const round of [1, 2, 3]) {
  const started = Date.now();
  await page.goto(`${base}/graph`);
  await page.waitForFunction(() => /drawn in/.test(document.querySelector('[data-testid="graph-stats"]').textContent), null, { timeout: 60_000 });
  const collapsed = await page.getByTestId("graph-stats").textContent();
  const loaded = Date.now() - started;
  const expandStarted = Date.now();
  await page.getByRole("button", { name: "Expand all" }).click();
  await page.waitForFunction(() => /^[0-9,]{4,} nodes/.test(document.querySelector('[data-testid="graph-stats"]').textContent), null, { timeout: 60_000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const expanded = await page.getByTestId("graph-stats").textContent();
  console.log(`graph round ${round}: page to first graph ${loaded} ms (${collapsed.trim()}); expand all to painted ${Date.now() - expandStarted} ms (${expanded.trim()})`);
}
await browser.close();
