// The console page: polls the console's JSON and renders it with DOM calls
// only (textContent, never HTML strings), so nothing an event carries can run.
"use strict";

const COLORS = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#4b5563"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function time(t) {
  return t ? new Date(t).toLocaleTimeString() : "";
}

function correlationButton(id) {
  if (!id) return "";
  const b = el("button", { type: "button", class: "link", title: id, "aria-label": `Show the trail of ${id}` }, `${id.slice(0, 13)}…`);
  b.addEventListener("click", () => showTrail(id));
  return b;
}

function fillBody(table, rows, empty) {
  const body = document.querySelector(`#${table} tbody`);
  const cols = document.querySelectorAll(`#${table} thead th`).length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "muted" }, empty))]));
}

function errorRow(table, message) {
  fillBody(table, [], `unavailable: ${message}`);
}

async function refreshComponents() {
  const { components } = await getJson("/api/components");
  const list = document.getElementById("components");
  list.replaceChildren(...components.map((c) => el("li", { "data-component": c.name, "data-ready": String(c.ready) },
    el("strong", {}, c.name), " ",
    el("span", { class: c.ready ? "ok" : "bad" }, c.ready ? "ready" : "not ready"),
    el("span", { class: "reason" }, c.ready ? c.address : c.reason || ""))));
}

async function refreshFlows() {
  const data = await getJson("/api/flows");
  if (Array.isArray(data.flows)) {
    fillBody("flows", data.flows.slice(0, 25).map((f) => el("tr", { "data-correlation-id": f.correlation_id },
      el("td", {}, time(f.sent_at)),
      el("td", {}, f.command_type),
      el("td", { class: f.status === "completed" ? "ok" : f.status === "pending" ? "muted" : "bad" }, f.status),
      el("td", { class: "num" }, f.latency_ms === null ? "—" : `${f.latency_ms} ms`),
      el("td", {}, correlationButton(f.correlation_id)))), "No commands yet.");
  } else {
    errorRow("flows", data.flows.error);
  }
  const problems = [];
  const unanswered = Array.isArray(data.unanswered) ? data.unanswered : (data.unanswered.commands || data.unanswered.unanswered || []);
  for (const u of unanswered) {
    problems.push(el("tr", {}, el("td", {}, u.command_type || u.event_type || u.type || ""), el("td", { class: "bad" }, "unanswered"),
      el("td", {}, u.reason || `no outcome since ${time(u.sent_at || u.time)}`), el("td", {}, correlationButton(u.correlation_id))));
  }
  for (const f of Array.isArray(data.flows) ? data.flows : []) {
    if (f.status === "failed" || f.status === "dead_lettered") {
      problems.push(el("tr", {}, el("td", {}, f.command_type), el("td", { class: "bad" }, f.status),
        el("td", {}, [f.code, f.reason].filter(Boolean).join(": ")), el("td", {}, correlationButton(f.correlation_id))));
    }
  }
  fillBody("problems", problems.slice(0, 20), "None.");
  if (Array.isArray(data.dead_letters)) {
    fillBody("dead-letters", data.dead_letters.map((d) => el("tr", {},
      el("td", {}, time(d.time)), el("td", {}, d.type || "(not an event)"), el("td", {}, d.reason || ""),
      el("td", {}, correlationButton(d.correlation_id)))), "None.");
  } else {
    errorRow("dead-letters", data.dead_letters.error);
  }
}

async function refreshCounts() {
  const { counts } = await getJson("/api/counts");
  fillBody("counts", counts.map((c) => el("tr", {}, el("td", {}, c.store), el("td", {}, c.what),
    el("td", { class: c.count === null ? "bad" : "num" }, c.count === null ? `unavailable: ${c.error}` : c.count.toLocaleString()))), "");
}

// Set through the CSSOM: the policy forbids inline style attributes.
function swatch(color) {
  const e = el("span", { "aria-hidden": "true" });
  e.style.background = color;
  return e;
}

function drawChart(chart) {
  const points = chart.series.reduce((n, s) => n + s.points.length, 0);
  const fig = el("figure", { "data-chart": chart.panel, "data-points": String(points) });
  fig.append(el("figcaption", {}, chart.title));
  const W = 600, H = 140, P = 4;
  const all = chart.series.flatMap((s) => s.points);
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `${chart.title}: ${chart.series.length} series, ${points} points` });
  if (all.length) {
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    const vmax = Math.max(...all.map((p) => p[1]), 1e-9);
    const x = (t) => P + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 2 * P);
    const y = (v) => H - P - (v / vmax) * (H - 2 * P);
    chart.series.forEach((s, i) => {
      box.append(svg("polyline", { fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": "2",
        "vector-effect": "non-scaling-stroke", points: s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }));
    });
    fig.append(box);
    fig.append(el("p", { class: "muted" }, `max ${vmax.toPrecision(3)}`));
  } else {
    fig.append(box);
    fig.append(el("p", { class: "muted" }, chart.error ? `unavailable: ${chart.error}` : "No data yet."));
  }
  fig.append(el("ul", { class: "legend" }, ...chart.series.map((s, i) =>
    el("li", {}, swatch(COLORS[i % COLORS.length]), s.name))));
  return fig;
}

async function refreshCharts() {
  const { charts } = await getJson("/api/charts");
  document.getElementById("charts").replaceChildren(...charts.map(drawChart));
}

async function showTrail(id) {
  document.getElementById("correlation-id").value = id;
  const out = document.getElementById("trail");
  out.replaceChildren(el("p", { class: "muted" }, `Loading the trail of ${id}…`));
  let data;
  try {
    data = await getJson(`/api/trail/${encodeURIComponent(id)}`);
  } catch (e) {
    out.replaceChildren(el("p", { class: "bad" }, String(e.message)));
    return;
  }
  const events = Array.isArray(data.events) ? data.events : [];
  const spans = Array.isArray(data.spans) ? data.spans : [];
  const table = el("table", { id: "trail-events", "data-correlation-id": id },
    el("caption", {}, `Audit trail of ${id}: ${events.length} events (S1 → S2 → S3)`),
    el("thead", {}, el("tr", {}, ...["Time", "Topic", "Role", "Type", "Outcome"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...events.map((e) => el("tr", {}, el("td", {}, time(e.time)), el("td", {}, e.topic), el("td", {}, e.role),
      el("td", {}, e.type || ""), el("td", {}, e.outcome ? [e.outcome.status, e.outcome.code].filter(Boolean).join(": ") : "")))));
  const spanTable = el("table", { id: "trail-spans" },
    el("caption", {}, Array.isArray(data.spans) ? `Trace spans from Jaeger: ${spans.length}` : `Trace spans unavailable: ${data.spans.error}`),
    el("thead", {}, el("tr", {}, ...["Service", "Operation", "Duration"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...spans.map((s) => el("tr", {}, el("td", {}, s.service), el("td", {}, s.operation),
      el("td", { class: "num" }, `${(s.duration_us / 1000).toFixed(1)} ms`)))));
  out.replaceChildren(table, spanTable);
}

function every(ms, fn) {
  const run = () => fn().catch((e) => console.warn(e.message)).finally(() => setTimeout(run, ms));
  run();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("audit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showTrail(document.getElementById("correlation-id").value.trim());
  });
  every(2000, async () => {
    await Promise.all([refreshComponents(), refreshFlows()]);
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  });
  every(5000, refreshCounts);
  every(10000, refreshCharts);
});
