// Drives Debian's Chromium through the console page, as a person would:
//   node console.cjs CONSOLE_URL S1_URL SCREENSHOT_DIR
// The page loads with no console errors; a command sent through S1 shows up
// in the flow list; its audit look-up shows the trail with the trace's spans;
// every chart has data. Writes screenshots; prints one JSON line per step;
// exits non-zero naming what failed.
"use strict";

const { chromium } = require("playwright-core");
const path = require("path");

const [consoleUrl, s1Url, shots] = process.argv.slice(2);
if (!consoleUrl || !s1Url || !shots) {
  console.error("usage: node console.cjs CONSOLE_URL S1_URL SCREENSHOT_DIR");
  process.exit(2);
}

function step(name, detail) {
  console.log(JSON.stringify({ step: name, ...detail }));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    // This machine's network is closed: no background fetches, no sandbox as root.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));

    await page.goto(consoleUrl, { waitUntil: "load" });
    await page.waitForSelector("#components li[data-component='S1 gateway'][data-ready='true']", { timeout: 15000 });
    for (const c of ["S2 processor", "S3 monitor", "PostgreSQL", "MongoDB", "Redis", "Kafka", "OpenSearch", "Prometheus", "Jaeger"]) {
      await page.waitForSelector(`#components li[data-component='${c}'][data-ready='true']`, { timeout: 15000 });
    }
    step("components ready");

    const email = `console-${Date.now()}@example.com`;
    const r = await fetch(`${s1Url}/v1/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Console Test", email, password: "console-password-1" }),
    });
    if (r.status !== 202) throw new Error(`S1 answered ${r.status} to a registration`);
    const { correlation_id: cid } = await r.json();
    const sent = Date.now();
    const row = `#flows tr[data-correlation-id='${cid}']`;
    await page.waitForSelector(row, { timeout: 20000 });
    step("flow listed", { correlation_id: cid, after_ms: Date.now() - sent });

    // Spans reach Jaeger after each exporter's batch delay: look again until
    // every service's are there.
    const wanted = ["polystream-s1-gateway", "polystream-s2-processor", "polystream-s3-monitor"];
    let services = [];
    for (let i = 0; i < 20; i++) {
      await page.click(`${row} button`);
      await page.waitForSelector(`#trail-events[data-correlation-id='${cid}']`, { timeout: 10000 });
      services = await page.locator("#trail-spans tbody tr td:first-child").allTextContents();
      if (wanted.every((s) => services.includes(s))) break;
      await page.waitForTimeout(2000);
    }
    const spans = services.length;
    const events = await page.locator("#trail-events tbody tr").count();
    if (events < 2) problems.push(`the trail of ${cid} shows ${events} events; expected the command and its outcome`);
    for (const s of wanted) {
      if (!services.includes(s)) problems.push(`the trace of ${cid} has no span of ${s} (has: ${[...new Set(services)].join(", ")})`);
    }
    step("trail shown", { events, spans });

    // Charts refresh every 10 s: wait for one refresh where every chart has points.
    const deadline = Date.now() + 45000;
    let empty = ["(not drawn yet)"];
    while (Date.now() < deadline) {
      empty = await page.$$eval("#charts figure", (fs) => fs.filter((f) => f.dataset.points === "0").map((f) => f.dataset.chart));
      const drawn = await page.locator("#charts figure").count();
      if (drawn > 0 && empty.length === 0) break;
      await page.waitForTimeout(2000);
    }
    if (empty.length) problems.push(`charts without data: ${empty.join(", ")}`);
    step("charts drawn", { empty });

    await page.screenshot({ path: path.join(shots, "console.png"), fullPage: true });
    await page.locator("#audit-title").scrollIntoViewIfNeeded();
    await page.locator("#trail").screenshot({ path: path.join(shots, "console-trail.png") });
    step("screenshots", { dir: shots });
  } finally {
    await browser.close();
  }
  if (problems.length) {
    console.error(problems.join("\n"));
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
