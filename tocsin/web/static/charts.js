// Tocsin dashboard charts: inline SVG drawn here, no library, no build step.
// Reads GET /api/alerts/charts (ClickHouse): alerts per minute by severity and by outcome,
// delivery success and latency per channel per hour. Every value reaches the page through
// attributes and textContent, never as HTML; colours are SVG presentation attributes (the
// page's CSP forbids inline styles). The window is the last 24 hours as the worker's clock
// has it, or ?since=...&until=... of the page's address (tests pin it that way).
"use strict";

(() => {
  const REFRESH_MS = 60000;
  const TIMEOUT_MS = 10000;
  const LS_TOKEN = "tocsin.apiToken";
  const SVG = "http://www.w3.org/2000/svg";
  const W = 1000;             // viewBox width; the SVG scales to its box
  const H = 170;
  const PAD = { left: 44, right: 8, top: 8, bottom: 22 };
  const MAX_SLOTS = 1440;     // alert buckets drawn: a day of minutes

  // known series get their colour; any other (an outcome added later) gets one from its name
  const COLOURS = {
    SEV1: "#ff5c5c", SEV2: "#ffb224", SEV3: "#6cb6ff",
    notify: "#3fcf8e", bypass: "#2fb8ac", suppress: "#6b7785", silenced: "#a78bfa",
    muted: "#8b9bb4", inhibited: "#c08457", flapping: "#f59e0b", grouped: "#5aa9ff",
    digest: "#818cf8", escalated: "#ff6b9a",
  };
  const CHANNEL_COLOURS = ["#5aa9ff", "#3fcf8e", "#ffb224", "#e879f9", "#22d3ee", "#fb7185", "#a3e635", "#fdba74"];
  const PALETTE = ["#e879f9", "#facc15", "#22d3ee", "#fb7185", "#a3e635", "#fdba74", "#93c5fd", "#f0abfc"];

  function colour(name) {
    if (Object.prototype.hasOwnProperty.call(COLOURS, name)) return COLOURS[name];
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) el.append(kid);
    return el;
  }

  function title(text) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = text;
    return t;
  }

  function text(x, y, value, anchor, cls) {
    const t = s("text", { x, y, "text-anchor": anchor || "start", class: cls || "axis-label" });
    t.textContent = value;
    return t;
  }

  const pad2 = (n) => String(n).padStart(2, "0");
  const hhmm = (t) => { const d = new Date(t); return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`; };
  const when = (t) => { const d = new Date(t); return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hhmm(t)}`; };
  const fmt = (n) => Number(n).toLocaleString("en-US");

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // the frame every chart shares: y grid and labels, x labels every few hours
  function frame(svg, since, until, yMax, yFmt) {
    const plotH = H - PAD.top - PAD.bottom;
    const g = s("g", { class: "frame" });
    for (const f of [0, 0.5, 1]) {
      const y = PAD.top + plotH * (1 - f);
      g.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
      g.append(text(PAD.left - 6, y + 4, yFmt(yMax * f), "end"));
    }
    const span = until - since;
    const step = [3600e3, 3 * 3600e3, 6 * 3600e3, 24 * 3600e3, 7 * 24 * 3600e3].find((x) => span / x <= 8) || span;
    const x = xScale(since, until);
    for (let t = Math.ceil(since / step) * step; t < until; t += step) {
      g.append(s("line", { x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom, class: "grid grid-x" }));
      g.append(text(x(t), H - 6, step >= 24 * 3600e3 ? when(t).slice(5, 10) : hhmm(t), "middle"));
    }
    svg.append(g);
  }

  const xScale = (since, until) => (t) => PAD.left + ((t - since) / (until - since)) * (W - PAD.left - PAD.right);

  // entries: [name, colour, what to say of it]
  function legend(el, entries) {
    el.replaceChildren(...entries.map(([name, fill, said]) => {
      const li = document.createElement("li");
      li.dataset.series = name;
      const sw = s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true" },
        s("rect", { width: 12, height: 12, rx: 2, fill }));
      const label = document.createElement("span");
      label.textContent = ` ${name} `;
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = said;
      li.append(sw, label, count);
      return li;
    }));
  }

  function box(id) {
    const el = $(id);
    return { el, svg: el.querySelector("svg.chart"), legend: el.querySelector("ul.legend"), empty: el.querySelector(".chart-empty") };
  }

  function reset(b, label) {
    b.svg.replaceChildren();
    b.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    b.svg.setAttribute("aria-label", label);
  }

  // stacked bars: one <g class="stack"> per bucket with data, one <rect> per series in it
  function bars(id, label, rows, key, name, since, until, bucketMs) {
    const b = box(id);
    reset(b, label);
    const byBucket = new Map();
    const totals = new Map();
    for (const r of rows) {
      const t = Date.parse(r.bucket);
      const series = name(r[key]);
      if (!byBucket.has(t)) byBucket.set(t, []);
      byBucket.get(t).push([series, r.alerts]);
      totals.set(series, (totals.get(series) || 0) + r.alerts);
    }
    // known series in their usual order, then the others by name
    const known = Object.keys(COLOURS);
    const rank = (k) => (known.includes(k) ? known.indexOf(k) : known.length);
    const order = [...totals.keys()].sort((a, c) => rank(a) - rank(c) || a.localeCompare(c));
    const peak = Math.max(0, ...[...byBucket.values()].map((xs) => xs.reduce((n, [, c]) => n + c, 0)));
    const yMax = niceMax(peak);
    frame(b.svg, since, until, yMax, (v) => (Number.isInteger(v) ? fmt(v) : ""));
    const x = xScale(since, until);
    const plotH = H - PAD.top - PAD.bottom;
    // a minute of a day is under a pixel wide: drawn 2 units wide so that it shows
    const bw = Math.max(2, x(since + bucketMs) - x(since) - (bucketMs >= 3600e3 ? 1 : 0));
    const g = s("g", { class: "bars" });
    for (const [t, parts] of [...byBucket].sort((a, c) => a[0] - c[0])) {
      parts.sort((a, c) => order.indexOf(a[0]) - order.indexOf(c[0]));
      const stack = s("g", { class: "stack", "data-bucket": new Date(t).toISOString(),
                             "data-total": parts.reduce((n, [, c]) => n + c, 0) });
      let y = H - PAD.bottom;
      for (const [series, n] of parts) {
        const h = (n / yMax) * plotH;
        y -= h;
        stack.append(s("rect", { x: x(t).toFixed(2), y: y.toFixed(2), width: bw.toFixed(2), height: Math.max(h, 0.5).toFixed(2),
                                 fill: colour(series), "data-series": series, "data-count": n },
          title(`${when(t)} · ${series}: ${fmt(n)}`)));
      }
      g.append(stack);
    }
    b.svg.append(g);
    legend(b.legend, order.map((k) => [k, colour(k), fmt(totals.get(k))]));
    b.el.dataset.bars = String(byBucket.size);
    b.empty.hidden = byBucket.size > 0;
  }

  // lines: one <g class="series"> per channel (and measure), one <circle> per bucket with data
  function lines(id, label, series, since, until, yMax, yFmt, said) {
    const b = box(id);
    reset(b, label);
    frame(b.svg, since, until, yMax, yFmt);
    const x = xScale(since, until);
    const plotH = H - PAD.top - PAD.bottom;
    const y = (v) => PAD.top + plotH * (1 - Math.min(v, yMax) / yMax);
    const shown = new Map();
    let points = 0;
    for (const { name, group, fill, dashed, values } of series) {
      const pts = values.filter(([, v]) => typeof v === "number").sort((a, c) => a[0] - c[0]);
      if (!pts.length) continue;
      const g = s("g", { class: "series", "data-series": name });
      g.append(s("polyline", { points: pts.map(([t, v]) => `${x(t).toFixed(2)},${y(v).toFixed(2)}`).join(" "),
                               fill: "none", stroke: fill, "stroke-width": 2,
                               "stroke-dasharray": dashed ? "5 4" : null }));
      for (const [t, v, tip] of pts) {
        g.append(s("circle", { cx: x(t).toFixed(2), cy: y(v).toFixed(2), r: 3, fill,
                               class: "point", "data-value": v }, title(`${when(t)} · ${name}: ${tip}`)));
      }
      points += pts.length;
      if (!shown.has(group)) shown.set(group, [group, fill, said(group)]);
      b.svg.append(g);
    }
    legend(b.legend, [...shown.values()]);
    b.el.dataset.points = String(points);
    b.empty.hidden = points > 0;
  }

  function draw(data) {
    const since = Date.parse(data.since);
    const until = Date.parse(data.until);
    const bucket = data.bucket_s * 1000;
    const dBucket = data.delivery_bucket_s * 1000;
    const per = data.bucket_s === 60 ? "minute" : `${data.bucket_s} s`;
    const dPer = data.delivery_bucket_s === 3600 ? "hour" : `${data.delivery_bucket_s} s`;
    $("charts-window").textContent = `${when(since)} – ${when(until)}`;
    for (const el of document.querySelectorAll("[data-per]")) el.textContent = el.dataset.per === "alerts" ? per : dPer;

    bars("chart-severity", `Alerts per ${per} by severity`, data.by_severity, "severity", (v) => `SEV${v}`, since, until, bucket);
    bars("chart-outcome", `Alerts per ${per} by outcome`, data.by_outcome, "outcome", String, since, until, bucket);

    const channels = [...new Set([...data.delivery, ...data.latency].map((r) => r.channel))].sort();
    const paint = (c) => CHANNEL_COLOURS[channels.indexOf(c) % CHANNEL_COLOURS.length];
    const delivered = new Map(channels.map((c) => [c, [0, 0]]));
    const rate = channels.map((c) => {
      const rows = data.delivery.filter((r) => r.channel === c);
      for (const r of rows) { delivered.get(c)[0] += r.delivered; delivered.get(c)[1] += r.deliveries; }
      return { name: c, group: c, fill: paint(c), values: rows.map((r) => [Date.parse(r.bucket), r.success_rate * 100,
        `${(r.success_rate * 100).toFixed(1)}% of ${fmt(r.deliveries)} (${fmt(r.dead)} dead)`]) };
    });
    lines("chart-delivery", `Delivery success per ${dPer} by channel`, rate, since, until, 100, (v) => `${Math.round(v)}%`,
      (c) => { const [ok, n] = delivered.get(c); return n ? `${((ok / n) * 100).toFixed(1)}% of ${fmt(n)}` : "–"; });

    const peak = Math.max(0, ...data.latency.map((r) => r.p95_ms));
    const lat = [];
    for (const c of channels) {
      const rows = data.latency.filter((r) => r.channel === c);
      const ms = (v) => (v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`);
      lat.push({ name: `${c} p50`, group: c, fill: paint(c), values: rows.map((r) => [Date.parse(r.bucket), r.p50_ms, `p50 ${ms(r.p50_ms)} of ${fmt(r.attempts)}`]) });
      lat.push({ name: `${c} p95`, group: c, fill: paint(c), dashed: true, values: rows.map((r) => [Date.parse(r.bucket), r.p95_ms, `p95 ${ms(r.p95_ms)}, p99 ${ms(r.p99_ms)}, max ${ms(r.max_ms)}`]) });
    }
    lines("chart-latency", `Send latency per ${dPer} by channel (p50 solid, p95 dashed)`, lat, since, until, niceMax(peak),
      (v) => `${v >= 10 ? Math.round(v) : +v.toFixed(1)}`, () => "p50 ─ p95 ┄");
  }

  // ---- loading --------------------------------------------------------------------------------

  function params() {
    const page = new URLSearchParams(location.search);
    const q = new URLSearchParams();
    const since = page.get("since");
    const until = page.get("until");
    if (until) q.set("until", until);
    if (since) q.set("since", since);
    const span = (Date.parse(until || "") || Date.now()) - (Date.parse(since || "") || (Date.parse(until || "") || Date.now()) - 864e5);
    if (span > 864e5) {  // a longer window: wider buckets, at most a day of minutes' worth
      q.set("bucket_s", String(Math.ceil(span / 1000 / MAX_SLOTS / 60) * 60));
      q.set("delivery_bucket_s", String(Math.ceil(span / 1000 / 168 / 3600) * 3600));
    }
    return q.toString();
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    const status = $("charts-status");
    const token = localStorage.getItem(LS_TOKEN) || "";
    const ctl = new AbortController();
    const stop = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch(`/api/alerts/charts?${params()}`, {
        cache: "no-store", signal: ctl.signal,
        headers: { Accept: "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      });
      const body = await resp.json().catch(() => null);
      if (!resp.ok) {
        const why = body && typeof body.error === "string" ? body.error : `HTTP ${resp.status}`;
        status.textContent = resp.status === 401 ? "Charts: enter the API token above." : `Charts unavailable: ${why}`;
        status.dataset.state = "error";
      } else {
        draw(body);
        status.textContent = "";
        status.dataset.state = "ok";
        $("charts").dataset.loaded = "true";
      }
    } catch (_) {
      status.textContent = "Charts: the API is unreachable; retrying.";
      status.dataset.state = "error";
    } finally {
      clearTimeout(stop);
    }
    // sooner while nothing was drawn (the token may come in a moment)
    timer = setTimeout(refresh, $("charts").dataset.loaded === "true" ? REFRESH_MS : 5000);
  }

  function init() {
    window.addEventListener("storage", (ev) => { if (ev.key === LS_TOKEN) refresh(); });
    $("token-form")?.addEventListener("submit", () => setTimeout(refresh, 0));
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
