/* Switchboard operations dashboard: vanilla JS against /api/ and /metrics.
   Data goes into the DOM through textContent only. The page URL never changes: search
   terms (which may be PHI) stay in the form and the API request. */
"use strict";

const TOKEN_KEY = "switchboard.admin.token";
const REFRESH_MS = 5000;
const $ = (sel) => document.querySelector(sel);
let current = null; // id of the message in the detail view
// a replay takes these in again (they went nowhere); others have their deliveries replayed
const REPROCESS = ["errored", "rejected", "unrouted", "filtered"];
let lastMetrics = null; // {t, received: {listener: n}}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch("/api/" + path, {
      method: opts.method || "GET", headers, cache: "no-store", credentials: "omit",
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    });
  } catch (e) {
    throw new ApiError(0, "the engine is unreachable");
  }
  let data = {};
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (resp.status === 401) {
    showAuthError(true);
    throw new ApiError(401, "authorization required");
  }
  showAuthError(false);
  if (!resp.ok && !(resp.status === 409 && path === "reload")) {
    throw new ApiError(resp.status, data.error || ("HTTP " + resp.status));
  }
  return data;
}

function showAuthError(on) {
  const box = $("#auth-error");
  box.hidden = !on;
  box.textContent = on ? (token()
    ? "Authorization error: the admin token was refused. Enter the right token above."
    : "Authorization error: this engine requires an admin token. Enter it above.") : "";
}

function notice(text, isError) {
  const box = isError ? $("#auth-error") : $("#notice");
  box.textContent = text;
  box.hidden = false;
  if (!isError) { clearTimeout(notice.t); notice.t = setTimeout(() => { box.hidden = true; }, 8000); }
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function button(label, onclick, extra) {
  const b = el("button", label);
  b.type = "button";
  if (extra) b.setAttribute("aria-label", extra);
  b.addEventListener("click", onclick);
  return b;
}

function age(seconds) {
  if (!seconds) return "–";
  if (seconds < 60) return seconds.toFixed(0) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }

// status -----------------------------------------------------------------------------
async function refreshStatus() {
  let status;
  try {
    status = await api("status");
  } catch (e) {
    const st = $("#engine-state");
    st.className = "state unknown";
    st.textContent = "Engine state: " + (e.status === 401 ? "not authorized" : e.message);
    return;
  }
  const st = $("#engine-state");
  st.className = "state " + (status.ok ? "ok" : "failing");
  st.textContent = "Engine state: " + (status.ok ? "ok" : "failing");
  $("#updated").textContent = "Updated " + new Date().toLocaleTimeString();
  renderDestinations(status.destinations || []);
  renderListeners(status.listeners || []);
}

function renderDestinations(rows) {
  const body = $("#destinations tbody");
  body.replaceChildren();
  if (!rows.length) {
    const tr = el("tr"); const td = el("td", "No destinations."); td.colSpan = 11;
    tr.append(td); body.append(tr); return;
  }
  for (const d of rows) {
    const tr = el("tr");
    tr.dataset.channel = d.channel; tr.dataset.destination = d.destination;
    tr.append(el("th", d.channel), el("td", d.destination));
    tr.firstChild.scope = "row";
    const h = el("td"); const known = ["healthy", "degraded", "down"].includes(d.health);
    h.append(el("span", d.health, "health " + (known ? d.health : "other"))); tr.append(h);
    tr.append(el("td", d.paused ? "paused" : "no", "paused"));
    const depth = d.depth || {};
    for (const s of ["pending", "in_flight", "retry", "held", "dead"]) {
      const n = depth[s] || 0;
      tr.append(el("td", n, "num " + s + (n ? " nonzero" : "")));
    }
    tr.append(el("td", age(d.oldest_age), "num"));
    const acts = el("td");
    const target = d.channel + "/" + d.destination;
    const q = "queues/" + encodeURIComponent(d.channel) + "/" + encodeURIComponent(d.destination);
    acts.append(
      d.paused
        ? button("Resume", () => act(q + "/resume", "Resumed " + target), "Resume " + target)
        : button("Pause", () => act(q + "/pause", "Paused " + target), "Pause " + target),
      button("Skip head", () => {
        if (confirm("Skip the first open delivery of " + target + "?")) act(q + "/skip", "Skipped the head of " + target);
      }, "Skip the head of " + target),
      button("Replay dead", () => act("replay", "Replayed dead deliveries of " + target,
        { channel: d.channel, destination: d.destination }), "Replay the dead deliveries of " + target),
    );
    acts.className = "actions";
    tr.append(acts);
    body.append(tr);
  }
}

async function act(path, done, body) {
  let next = current;
  try {
    const out = await api(path, { method: "POST", body: body === undefined ? {} : body });
    if (out.new_message_id !== undefined) { // taken in again: show the new message
      notice("Message " + out.message_id + " taken in again as message " + out.new_message_id +
        ": " + out.status + (out.ack_code ? " (" + out.ack_code + ")" : ""));
      next = out.new_message_id;
    } else {
      notice(done + (out.replayed !== undefined ? " (" + out.replayed + ")" : ""));
    }
  } catch (e) {
    if (e.status !== 401) notice("Failed: " + e.message, true);
  }
  refreshStatus();
  if (next !== null) openMessage(next);
}

// metrics ----------------------------------------------------------------------------
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const p of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

let listenerRows = [];
let metricSamples = [];

async function refreshMetrics() {
  try {
    const resp = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
    if (!resp.ok) return;
    metricSamples = parseMetrics(await resp.text());
  } catch (e) { return; }
  renderListeners(listenerRows);
  renderChannels();
  renderErrors();
}

function sum(name, filter) {
  return metricSamples.filter((s) => s.name === name && (!filter || filter(s.labels)))
    .reduce((a, s) => a + s.value, 0);
}

function renderListeners(rows) {
  listenerRows = rows;
  const now = Date.now() / 1000;
  const received = {};
  for (const l of rows) received[l.name] = sum("switchboard_messages_received_total", (x) => x.listener === l.name);
  const prev = lastMetrics;
  const body = $("#listeners tbody");
  body.replaceChildren();
  for (const l of rows) {
    const tr = el("tr");
    const th = el("th", l.name); th.scope = "row";
    let rate = "–";
    if (prev && prev.received[l.name] !== undefined && now - prev.t > 1) {
      rate = (((received[l.name] - prev.received[l.name]) / (now - prev.t)) * 60).toFixed(1);
    }
    const codes = metricSamples.filter((s) => s.name === "switchboard_acks_total" && s.labels.listener === l.name)
      .map((s) => s.labels.code + " " + s.value).join(", ");
    tr.append(th, el("td", l.kind), el("td", l.running ? "yes" : "NO"), el("td", received[l.name], "num"),
      el("td", rate, "num"), el("td", codes || "–"));
    body.append(tr);
  }
  if (metricSamples.length && (!prev || now - prev.t >= REFRESH_MS / 1000 - 0.5)) lastMetrics = { t: now, received };
}

let lastChannels = null;

function renderChannels() {
  const names = [...new Set(metricSamples.filter((s) => s.labels.channel).map((s) => s.labels.channel))].sort();
  const now = Date.now() / 1000;
  const delivered = {};
  const body = $("#channels tbody");
  body.replaceChildren();
  for (const name of names) {
    const of = (metric, extra) => sum(metric, (x) => x.channel === name && (!extra || extra(x)));
    delivered[name] = of("switchboard_delivered_total");
    let rate = "–";
    if (lastChannels && lastChannels.delivered[name] !== undefined && now - lastChannels.t > 1) {
      rate = (((delivered[name] - lastChannels.delivered[name]) / (now - lastChannels.t)) * 60).toFixed(1);
    }
    const th = el("th", name); th.scope = "row";
    const tr = el("tr");
    tr.append(th,
      el("td", of("switchboard_channel_messages_total", (x) => x.outcome === "passed"), "num"),
      el("td", of("switchboard_channel_messages_total", (x) => x.outcome === "filtered"), "num"),
      el("td", of("switchboard_channel_messages_total", (x) => x.outcome === "errored"), "num"),
      el("td", delivered[name], "num"), el("td", rate, "num"),
      el("td", of("switchboard_dead_letters_total"), "num"));
    body.append(tr);
  }
  if (metricSamples.length && (!lastChannels || now - lastChannels.t >= REFRESH_MS / 1000 - 0.5)) {
    lastChannels = { t: now, delivered };
  }
}

const ERROR_METRICS = [
  ["Rejected messages", "switchboard_messages_rejected_total"],
  ["Framing errors", "switchboard_frame_errors_total"],
  ["Refused connections", "switchboard_connections_refused_total"],
  ["Store write errors", "switchboard_store_errors_total"],
  ["Step errors", "switchboard_step_errors_total"],
  ["Errored in channels", "switchboard_channel_messages_total", (x) => x.outcome === "errored"],
];

function renderErrors() {
  const body = $("#errors tbody");
  body.replaceChildren();
  for (const [label, name, filter] of ERROR_METRICS) {
    const th = el("th", label); th.scope = "row";
    const n = sum(name, filter);
    const tr = el("tr"); tr.append(th, el("td", n, "num" + (n ? " dead nonzero" : ""))); body.append(tr);
  }
}

// search and detail ------------------------------------------------------------------
async function search(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($("#search"))) if (String(v).trim()) params.set(k, String(v).trim());
  const body = $("#results tbody");
  let out;
  try {
    out = await api("messages?" + params.toString());
  } catch (e) {
    $("#results-count").textContent = e.status === 401 ? "Not authorized." : "Search failed: " + e.message;
    return;
  }
  body.replaceChildren();
  for (const m of out.messages) {
    const tr = el("tr");
    tr.dataset.id = m.id;
    const th = el("th", m.id); th.scope = "row";
    tr.append(th, el("td", when(m.received_at)), el("td", m.listener), el("td", m.control_id, "control-id"),
      el("td", [m.message_type, m.trigger].filter(Boolean).join("^")), el("td", m.patient_id || ""),
      el("td", m.status), el("td", m.ack_code || ""));
    const td = el("td");
    td.append(button("Open", () => openMessage(m.id), "Open message " + m.id));
    tr.append(td);
    body.append(tr);
  }
  $("#results-count").textContent = out.count + (out.count === 1 ? " message" : " messages");
}

function segments(pre, text) {
  pre.replaceChildren();
  if (!text) { pre.textContent = "(none)"; return; }
  const lines = text.split(/\r\n|\r|\n/).filter((s) => s.length);
  for (const line of lines) {
    const span = el("span", line.slice(0, 3), "seg");
    pre.append(span, document.createTextNode(line.slice(3) + "\n"));
  }
}

async function openMessage(id) {
  let m;
  try {
    m = await api("messages/" + encodeURIComponent(id));
  } catch (e) {
    if (e.status !== 401) notice("Could not open message " + id + ": " + e.message, true);
    return;
  }
  current = m.id;
  $("#detail").hidden = false;
  $("#detail-id").textContent = m.id;
  $("#detail-meta").textContent = [
    "Received " + when(m.received_at), "listener " + m.listener, "from " + (m.peer || "?"),
    "status " + m.status + (m.reason ? " (" + m.reason + ")" : ""), "ACK " + (m.ack_code || "none"),
    m.duplicates ? m.duplicates + " duplicates" : "",
  ].filter(Boolean).join(" · ");
  const links = $("#detail-links");
  links.replaceChildren();
  const link = (label, id) => links.append(button(label + " " + id, () => openMessage(id), "Open message " + id));
  if (m.reprocess_of) link("Reprocess of message", m.reprocess_of);
  if (m.conflicts_with) link("Same MSH-10 as message", m.conflicts_with);
  for (const id of m.reprocessed_as || []) link("Reprocessed as message", id);
  links.hidden = !links.childElementCount;
  $("#replay").textContent = REPROCESS.includes(m.status)
    ? "Take in again on the current configuration" : "Replay dead, held and skipped deliveries";
  segments($("#raw"), m.raw);
  segments($("#ack"), m.ack);
  const runs = $("#runs tbody"); runs.replaceChildren();
  for (const r of m.channel_runs || []) {
    const tr = el("tr");
    tr.append(el("td", r.channel), el("td", r.status + (r.implied ? " (implied)" : "")),
      el("td", r.step ? r.step + (r.step_kind ? " " + r.step_kind : "") : ""), el("td", r.reason || ""));
    runs.append(tr);
  }
  const dels = $("#deliveries tbody"); dels.replaceChildren();
  for (const d of m.deliveries || []) {
    const tr = el("tr");
    tr.dataset.id = d.id;
    const resp = el("td");
    if (d.response) { const p = el("pre"); segments(p, d.response); resp.append(p); }
    if (d.last_error) resp.append(el("div", d.last_error));
    tr.append(el("td", d.id), el("td", d.channel), el("td", d.destination), el("td", d.status, "status"),
      el("td", d.attempts, "num"), el("td", d.response_code || ""), resp);
    dels.append(tr);
  }
}

function init() {
  $("#token").value = token();
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("#token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    refreshStatus();
  });
  $("#token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY); $("#token").value = ""; refreshStatus();
  });
  $("#reload").addEventListener("click", async () => {
    try {
      const out = await api("reload", { method: "POST", body: {} });
      notice(out.ok ? "Configuration reloaded." : "Reload refused: " + (out.messages || []).join("; "), !out.ok);
    } catch (e) { if (e.status !== 401) notice("Reload failed: " + e.message, true); }
    refreshStatus();
  });
  $("#search").addEventListener("submit", search);
  $("#replay").addEventListener("click", () => {
    if (current !== null) act("messages/" + current + "/replay", "Replayed message " + current);
  });
  $("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; current = null; });
  const tick = () => { refreshStatus(); refreshMetrics(); };
  tick();
  setInterval(tick, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", init);
