// Tocsin dashboard: plain JavaScript, no build step. Talks only to this worker's /api.
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

(() => {
  const REFRESH_MS = 5000;      // normal polling
  const FAST_MS = 1000;         // polling right after an action, until the change shows
  const FAST_FOR_MS = 10000;
  const PENDING_MS = 30000;     // how long an action shows as pending without a change
  const PAGE = 50;
  const TIMEOUT_MS = 8000;
  const LS_TOKEN = "tocsin.apiToken";
  const LS_BY = "tocsin.by";

  const ACTIONS = {
    acknowledge: { label: "Ack", long: "Acknowledge", target: "acknowledged", doing: "acknowledging" },
    resolve: { label: "Resolve", long: "Resolve", target: "resolved", doing: "resolving" },
    // back to active: an escalation the acknowledgement stopped resumes (README "Escalation policies")
    unacknowledge: { label: "Un-ack", long: "Un-acknowledge", target: "active", doing: "un-acknowledging" },
  };
  const TEST_IDS = { acknowledge: "ack", resolve: "resolve", unacknowledge: "unack" };

  const state = {
    severity: "",
    status: "",
    offset: 0,
    selected: null,          // the alert item whose deliveries are shown
    pending: new Map(),      // fingerprint -> {action, target, until}
    rows: new Map(),         // fingerprint -> {key, tr}
    seq: 0,
    timer: null,
    fastUntil: 0,
    errors: { conn: null, action: null },
  };

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

  // ---- small helpers --------------------------------------------------------------------------

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
    return el;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function clock(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "–";
    const d = new Date(t);
    const today = new Date();
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return "–";
    const s = Math.max(0, Math.floor((Date.now() - t) / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  const fmtMs = (ms) => (typeof ms !== "number" ? "–" : ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`);
  const fmtInt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");

  // ---- API ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail || `HTTP ${status}`);
      this.status = status;   // 0: no answer (network error or timeout)
      this.detail = detail;
    }
  }

  async function api(path, options = {}) {
    // reads are open by contract; a stored token goes along in case the worker protects them
    const token = getToken();
    const auth = token ? { Authorization: `Bearer ${token}` } : {};
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    let resp;
    try {
      resp = await fetch(path, {
        ...options,
        cache: "no-store",
        signal: ctl.signal,
        headers: { Accept: "application/json", ...auth, ...(options.headers || {}) },
      });
    } catch (_) {
      clearTimeout(timer);
      throw new ApiError(0, "");
    }
    clearTimeout(timer);
    const text = await resp.text().catch(() => "");
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!resp.ok) {
      let detail = "";
      if (body && typeof body === "object") detail = body.error || body.detail || body.message || "";
      throw new ApiError(resp.status, typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return body;
  }

  function describe(err, what) {
    if (!(err instanceof ApiError)) return `${what}: ${err}`;
    if (err.status === 0) return `${what}: the API is unreachable (worker down or network error).`;
    if (err.status === 401) return `${what}: not authorised (401).`;
    if (err.status === 404) return `${what}: not found (404).`;
    return `${what}: HTTP ${err.status}${err.detail ? ` – ${err.detail}` : ""}.`;
  }

  // ---- token ----------------------------------------------------------------------------------

  const getToken = () => localStorage.getItem(LS_TOKEN) || "";
  const getBy = () => localStorage.getItem(LS_BY) || "";

  function renderToken() {
    const has = Boolean(getToken());
    $("token-form").hidden = has;
    $("token-set").hidden = !has;
    $("token-by").textContent = getBy() ? ` · acting as ${getBy()}` : "";
    $("by-input").value = getBy();
  }

  function askToken(message) {
    localStorage.removeItem(LS_TOKEN);
    renderToken();
    if (message) showNotice(message, "warn");
    $("token-input").focus();
  }

  // ---- messages -------------------------------------------------------------------------------

  function renderBanner() {
    const el = $("error-banner");
    el.replaceChildren();
    const { conn, action } = state.errors;
    if (conn) el.append(h("p", { "data-kind": "conn" }, conn));
    if (action) {
      el.append(h("p", { "data-kind": "action" }, action, " ",
        h("button", { type: "button", class: "link", "aria-label": "Dismiss this message",
                      onclick: () => { state.errors.action = null; renderBanner(); } }, "Dismiss")));
    }
    el.hidden = !conn && !action;
  }

  let noticeTimer = null;
  function showNotice(text, kind = "ok") {
    const el = $("notice");
    el.textContent = text;
    el.dataset.kind = kind;
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function setConnection(ok, err) {
    const el = $("connection");
    if (ok) {
      el.dataset.state = "live";
      el.textContent = `Live · updated ${clock(new Date().toISOString())}`;
      state.errors.conn = null;
    } else {
      el.dataset.state = "down";
      el.textContent = err && err.status === 0 ? "API unreachable · retrying" : "API error · retrying";
      state.errors.conn = describe(err, "Cannot load alerts") +
        ` Retrying every ${REFRESH_MS / 1000} s; the data shown may be stale.`;
      if (err && err.status === 401) {
        state.errors.conn = getToken()
          ? "The API rejected the stored token (401). Enter a valid token."
          : "This worker requires the API token to read alerts (401). Enter it above.";
        if (getToken()) askToken(null); else renderToken();
      }
      if (err && err.status === 404) {
        state.errors.conn = "This worker serves no alert API (404 on /api/alerts). Retrying.";
      }
    }
    renderBanner();
  }

  // ---- stats and badge ------------------------------------------------------------------------

  function renderStats(stats) {
    const bySev = stats.by_severity || {};
    $("stat-total").textContent = fmtInt(stats.total_24h);
    $("stat-sev1").textContent = fmtInt(bySev["1"] ?? 0);
    $("stat-sev2").textContent = fmtInt(bySev["2"] ?? 0);
    const rate = stats.delivery_success_rate;
    const card = $("stat-delivery-card");
    if (typeof rate === "number") {
      $("stat-delivery").textContent = `${(rate * 100).toFixed(rate >= 0.9995 || rate === 0 ? 0 : 1)}%`;
      card.dataset.level = rate >= 0.99 ? "good" : rate >= 0.9 ? "warn" : "bad";
    } else {
      $("stat-delivery").textContent = "–";
      card.dataset.level = "none";
      $("stat-delivery").title = "No deliveries in the last 24 hours";
    }
    renderOutcomes(stats.by_outcome);
  }

  //: the outcomes that notify; every other one (suppress, silenced, flapping, ...) held one back
  const NOTIFYING = new Set(["notify", "bypass"]);

  function renderOutcomes(byOutcome) {
    const muted = $("stat-muted"), list = $("stat-outcomes");
    if (!byOutcome) {
      muted.textContent = "–";
      list.textContent = "";
      muted.title = "Decisions per outcome need recording (ClickHouse)";
      return;
    }
    const held = Object.entries(byOutcome).filter(([o]) => !NOTIFYING.has(o));
    muted.textContent = fmtInt(held.reduce((n, [, c]) => n + c, 0));
    list.textContent = held.map(([o, c]) => `${o} ${fmtInt(c)}`).join(" · ");
  }

  function renderBadge(n) {
    const el = $("unresolved-badge");
    el.dataset.count = String(n);
    el.dataset.level = n > 0 ? "alert" : "calm";
    el.textContent = `${fmtInt(n)} unresolved`;
  }

  // ---- alert table ----------------------------------------------------------------------------

  function entityText(e) {
    if (!e) return "";
    const parts = [];
    if (e.account_id) parts.push(e.account_id);
    if (e.symbol) parts.push(e.symbol);
    if (e.strategy_id) parts.push(e.strategy_id);
    if (e.run_id) parts.push(`run ${e.run_id}`);
    return parts.join(" · ");
  }

  function entityTitle(e) {
    if (!e) return null;
    const parts = [];
    for (const [k, label] of [["account_id", "account"], ["symbol", "symbol"],
                              ["strategy_id", "strategy"], ["run_id", "run"]]) {
      if (e[k]) parts.push(`${label} ${e[k]}`);
    }
    return parts.join(", ") || null;
  }

  function pendingFor(a) {
    const p = state.pending.get(a.fingerprint);
    if (!p) return null;
    if (Date.now() > p.until || a.status === p.target ||
        (p.target === "acknowledged" && (a.status === "resolved" || a.status === "dismissed"))) {
      state.pending.delete(a.fingerprint);
      return null;
    }
    return p;
  }

  function actionButton(a, action, pending) {
    const spec = ACTIONS[action];
    return h("button", {
      type: "button",
      class: `act act-${action}`,
      "data-testid": `${TEST_IDS[action]}-button`,
      "aria-label": `${spec.long}: ${a.summary}`,
      disabled: Boolean(pending),
      onclick: (ev) => { ev.stopPropagation(); act(a, action, ev.currentTarget); },
    }, spec.label);
  }

  function markSelected(tr, selected) {
    tr.classList.toggle("selected", selected);
    tr.dataset.selected = selected ? "true" : "false";
    const button = tr.querySelector("button.summary");
    if (button) button.setAttribute("aria-pressed", selected ? "true" : "false");
  }

  // why the latest alert was or was not notified: its decision's outcome and reason (the
  // outcomes are open: one this page does not know is shown as it is, in the neutral style)
  function decisionCell(a) {
    if (!a.outcome) return h("td", { class: "decision-cell" }, h("span", { class: "muted" }, "–"));
    return h("td", { class: "decision-cell" },
      h("span", { class: `outcome outcome-${String(a.outcome).replace(/[^a-z0-9_-]/gi, "")}`,
                  "data-testid": "alert-outcome", title: a.reason || null }, a.outcome),
      a.reason ? h("span", { class: "reason muted small", "data-testid": "alert-reason", title: a.reason }, a.reason) : null);
  }

  function buildRow(a, pending) {
    const sev = Number(a.severity);
    const actions = [];
    if (a.status === "active") actions.push(actionButton(a, "acknowledge", pending));
    if (a.status === "active" || a.status === "acknowledged") actions.push(actionButton(a, "resolve", pending));
    if (a.status === "acknowledged") actions.push(actionButton(a, "unacknowledge", pending));

    const statusCell = h("td", { class: "status-cell" },
      h("span", { class: `status status-${a.status}`, "data-testid": "alert-status" }, a.status),
      a.acknowledged_by && a.status !== "active"
        ? h("span", { class: "by", title: a.note || null }, `by ${a.acknowledged_by}`) : null,
      pending ? h("span", { class: "pending", "data-testid": "alert-pending" }, `${ACTIONS[pending.action].doing}…`) : null);

    const summary = h("button", {
      type: "button", class: "summary", "data-testid": "alert-summary",
      "aria-controls": "deliveries-heading", "aria-pressed": "false",
      title: "Show delivery attempts",
    }, a.summary);
    const meta = h("div", { class: "meta" },
      h("code", {}, a.type),
      a.source ? ` · ${a.source}` : "",
      a.requires_action ? h("span", { class: "tag" }, "action required") : null,
      a.inhibited_by ? h("span", { class: "tag", "data-testid": "alert-inhibited",
                                   title: "held by this inhibition rule while its source alert fires" },
                         `inhibited: ${a.inhibited_by}`) : null);

    const seen = h("td", { class: "num" }, fmtInt(a.occurrences),
      a.suppressed_count > 0
        ? h("div", { class: "muted small", title: "notifications suppressed by throttling" },
            `${fmtInt(a.suppressed_count)} suppressed`) : null);

    const last = h("td", { class: "when" },
      h("time", { datetime: a.last_seen, "data-ago": a.last_seen,
                  title: `first seen ${clock(a.first_seen)}, last seen ${clock(a.last_seen)}` },
        ago(a.last_seen)));

    const tr = h("tr", {
      "data-testid": "alert-row",
      "data-fingerprint": a.fingerprint,
      "data-alert-id": a.alert_id,
      "data-severity": sev,
      "data-status": a.status,
      "data-outcome": a.outcome || null,
      class: `sev-${sev} st-${a.status}`,
      onclick: () => select(a),
    },
      h("td", {}, h("span", { class: `sev sev-${sev}`, "data-testid": "alert-severity" }, `SEV${sev}`)),
      statusCell,
      decisionCell(a),
      h("td", { class: "alert-cell" }, summary, meta),
      h("td", { class: "entity", title: entityTitle(a.entity) }, entityText(a.entity) || h("span", { class: "muted" }, "–")),
      seen,
      last,
      h("td", { class: "actions" }, actions));
    return tr;
  }

  function renderAlerts(list) {
    const body = $("alerts-body");
    const items = Array.isArray(list.items) ? list.items : [];
    const next = new Map();
    const rows = [];
    for (const a of items) {
      const selected = Boolean(state.selected && state.selected.fingerprint === a.fingerprint);
      if (selected) state.selected = a;   // keep the newest alert_id of the selected fingerprint
      const pending = pendingFor(a);
      const key = JSON.stringify([a, pending && pending.action]);
      const old = state.rows.get(a.fingerprint);
      const tr = old && old.key === key ? old.tr : buildRow(a, pending);
      markSelected(tr, selected);
      next.set(a.fingerprint, { key, tr });
      rows.push(tr);
    }
    // move rows only where the order changed, so focus inside unchanged rows survives
    rows.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null); });
    while (body.children.length > rows.length) body.lastElementChild.remove();
    state.rows = next;
    for (const t of body.querySelectorAll("time[data-ago]")) t.textContent = ago(t.dataset.ago);

    $("alerts-empty").hidden = items.length > 0;
    $("alerts-table").dataset.count = String(items.length);
    const total = Number(list.total) || 0;
    const from = items.length ? state.offset + 1 : 0;
    $("pager-info").textContent = `${fmtInt(from)}–${fmtInt(state.offset + items.length)} of ${fmtInt(total)}`;
    $("page-prev").disabled = state.offset <= 0;
    $("page-next").disabled = state.offset + items.length >= total;
    return total;
  }

  // ---- deliveries -----------------------------------------------------------------------------

  function select(a) {
    state.selected = a;
    for (const [fp, row] of state.rows) markSelected(row.tr, fp === a.fingerprint);
    renderDeliveries(a, { items: [] }, null);
    $("deliveries-hint").textContent = "Loading delivery attempts…";
    refresh();
  }

  function renderDeliveries(alert, data, err) {
    const hint = $("deliveries-hint");
    const table = $("deliveries-table");
    const body = $("deliveries-body");
    const forEl = $("deliveries-for");
    if (!alert) {
      forEl.textContent = "";
      hint.textContent = "Select an alert to see its delivery attempts.";
      hint.hidden = false;
      table.hidden = true;
      return;
    }
    forEl.replaceChildren(h("span", { class: `sev sev-${Number(alert.severity)}` }, `SEV${Number(alert.severity)}`),
      " ", alert.summary, " ", h("code", { class: "muted", title: "alert_id" }, alert.alert_id),
      alert.outcome ? h("span", { "data-testid": "deliveries-decision" }, " · latest alert: ",
        h("span", { class: `outcome outcome-${String(alert.outcome).replace(/[^a-z0-9_-]/gi, "")}` }, alert.outcome),
        alert.reason ? ` ${alert.reason}` : "") : null);
    $("deliveries").dataset.alertId = alert.alert_id;
    if (err) {
      hint.textContent = describe(err, "Cannot load delivery attempts");
      hint.dataset.kind = "error";
      hint.hidden = false;
      return;   // keep the last attempts shown
    }
    hint.dataset.kind = "";
    const items = (data && Array.isArray(data.items)) ? data.items : [];
    if (!items.length) {
      hint.textContent = alert.outcome && !["notify", "bypass"].includes(alert.outcome)
        ? `No delivery attempts: its latest alert was decided ${alert.outcome}${alert.reason ? ` (${alert.reason})` : ""}.`
        : "No delivery attempts for this alert (yet): it may have been suppressed or still be queued.";
      hint.hidden = false;
      table.hidden = true;
      body.replaceChildren();
      return;
    }
    hint.hidden = true;
    table.hidden = false;
    body.replaceChildren(...items.map((d) => {
      const ok = d.status === "sent";
      return h("tr", { "data-testid": "delivery-row", "data-channel": d.channel, "data-status": d.status },
        h("td", {}, h("strong", {}, d.channel)),
        h("td", { class: "dest", title: d.destination || null }, d.destination || "–"),
        h("td", { class: "num" }, d.attempt ?? "–"),
        h("td", {}, h("span", { class: `result ${ok ? "result-ok" : "result-bad"}` }, d.status),
          d.reason && d.reason !== "ok" ? h("span", { class: "muted small" }, ` ${d.reason}`) : null),
        h("td", { class: "num" }, d.response_code ?? "–"),
        h("td", { class: "num" }, fmtMs(d.latency_ms)),
        h("td", { class: "when" }, h("time", { datetime: d.finished_at }, clock(d.finished_at))),
        h("td", { class: "error-text" }, d.error || ""));
    }));
  }

  // ---- refresh loop ---------------------------------------------------------------------------

  function query() {
    const q = new URLSearchParams({ offset: String(state.offset), limit: String(PAGE) });
    if (state.severity) q.set("severity", state.severity);
    if (state.status) q.set("status", state.status);
    return q.toString();
  }

  async function refresh() {
    clearTimeout(state.timer);
    const seq = ++state.seq;
    const selected = state.selected;
    const [list, stats, unresolved, deliveries] = await Promise.allSettled([
      api(`/api/alerts?${query()}`),
      api("/api/alerts/stats"),
      api("/api/alerts?status=active,acknowledged&limit=1"),
      selected ? api(`/api/alerts/${encodeURIComponent(selected.notified_alert_id || selected.alert_id)}/deliveries`) : Promise.resolve(null),
    ]);
    if (seq !== state.seq) return;   // a newer refresh is under way

    const failed = [list, stats, unresolved].find((r) => r.status === "rejected");
    if (list.status === "fulfilled") {
      const total = renderAlerts(list.value || {});
      if (state.offset > 0 && state.offset >= total) {   // the page emptied: go back
        state.offset = Math.max(0, Math.floor((total - 1) / PAGE) * PAGE);
        refresh();
        return;
      }
    }
    if (stats.status === "fulfilled" && stats.value) renderStats(stats.value);
    if (unresolved.status === "fulfilled" && unresolved.value) renderBadge(Number(unresolved.value.total) || 0);
    if (state.selected) {
      renderDeliveries(state.selected, deliveries.value,
        deliveries.status === "rejected" ? deliveries.reason : null);
    } else {
      renderDeliveries(null);
    }
    setConnection(!failed, failed && failed.reason);
    document.body.dataset.stale = list.status === "rejected" ? "true" : "false";
    document.body.dataset.loaded = "true";
    schedule();
  }

  function schedule() {
    clearTimeout(state.timer);
    const fast = Date.now() < state.fastUntil || state.pending.size > 0;
    state.timer = setTimeout(refresh, fast ? FAST_MS : REFRESH_MS);
  }

  // ---- actions --------------------------------------------------------------------------------

  async function act(a, action, button) {
    const spec = ACTIONS[action];
    const token = getToken();
    if (!token) {
      askToken(`Enter the API token to ${action} alerts.`);
      return;
    }
    button.disabled = true;
    try {
      await api(`/api/alerts/${encodeURIComponent(a.fingerprint)}/${action}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ by: getBy() || "dashboard", note: "" }),
      });
      state.pending.set(a.fingerprint, { action, target: spec.target, until: Date.now() + PENDING_MS });
      state.errors.action = null;
      state.fastUntil = Date.now() + FAST_FOR_MS;
      showNotice(`${spec.long} sent: ${a.summary}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        state.errors.action = "The API token was rejected (401). Enter a valid token and try again.";
        askToken(null);
      } else if (err instanceof ApiError && err.status === 403) {
        state.errors.action = `The worker refused to ${action} (403): ${err.message || "the API token is required"}`;
      } else {
        state.errors.action = describe(err, `Could not ${action} “${a.summary}”`);
      }
      button.disabled = false;
    }
    renderBanner();
    refresh();
  }

  // ---- wiring ---------------------------------------------------------------------------------

  function init() {
    renderToken();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token-input").value.trim();
      const by = $("by-input").value.trim();
      if (by) localStorage.setItem(LS_BY, by); else localStorage.removeItem(LS_BY);
      if (!token) {
        showNotice("Enter a token first.", "warn");
        $("token-input").focus();
        return;
      }
      localStorage.setItem(LS_TOKEN, token);
      $("token-input").value = "";
      if (state.errors.action && state.errors.action.includes("401")) state.errors.action = null;
      renderBanner();
      renderToken();
      showNotice("Token saved in this browser.");
    });
    $("token-clear").addEventListener("click", () => askToken(null));
    $("filter-severity").addEventListener("change", (ev) => {
      state.severity = ev.target.value; state.offset = 0; refresh();
    });
    $("filter-status").addEventListener("change", (ev) => {
      state.status = ev.target.value; state.offset = 0; refresh();
    });
    $("page-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
    $("page-next").addEventListener("click", () => { state.offset += PAGE; refresh(); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
