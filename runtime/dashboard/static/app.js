// tape dashboard: one WebSocket, three channels (market, trader, trades), snapshots then numbered deltas.
// Amounts arrive in the log's exact integer units and are shown as tape prints them (runtime/units.py).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) {  // the token stays in this tab: out of the address bar, never sent but over the socket
  sessionStorage.setItem("tape-token", params.get("token"));
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "#" + params.toString() : ""));
}
const token = () => sessionStorage.getItem("tape-token") || "";

// -- units (runtime/units.py: prices 1/10,000 $, counts 1/100 contract, money micro-dollars) -----------------
function fixed(units, places) {
  if (units === null || units === undefined) return "-";
  const neg = units < 0, abs = Math.abs(units), scale = 10 ** places;
  const whole = Math.floor(abs / scale), frac = String(abs % scale).padStart(places, "0");
  return (neg ? "-" : "") + whole + "." + frac;
}
const price = (u) => fixed(u, 4), count = (u) => fixed(u, 2), money = (u) => fixed(u, 6);
const usd = (u) => (u === null || u === undefined) ? "-" : (u < 0 ? "-$" + money(-u) : "$" + money(u));
const time = (ns) => ns ? new Date(ns / 1e6).toISOString().replace("T", " ").replace("Z", "") : "";

// -- state ------------------------------------------------------------------------------------------
const S = { n: {}, paused: false, through: 0, ts: 0, head: {}, market: { markets: {}, health: {} },
            trader: { positions: {}, history: [], open_orders: [] }, fills: new Map(), orders: new Map(),
            decisions: [], models: [], selected: null, order: null, session: params.get("session"), hello: null };
let ws = null, dirty = false, chartAt = 0;

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  ws = new WebSocket(url);
  ws.onopen = () => { status("connected", "good"); send({ op: "hello", token: token(), session: S.session }); };
  ws.onmessage = (e) => receive(JSON.parse(e.data));
  ws.onclose = (e) => {
    status("disconnected" + (e.reason ? ": " + e.reason : ""), "bad");
    if (e.code !== 4401) setTimeout(connect, 2000);
  };
}
const send = (m) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(m)); };
function status(text, kind) { const el = $("status"); el.textContent = text; el.className = "pill " + (kind || ""); }
function say(text) { const el = $("message"); el.textContent = text; el.hidden = !text; }

function receive(m) {
  switch (m.type) {
    case "hello":
      S.hello = m; $("halt").hidden = !m.halt; $("tab-sessions").hidden = m.single;
      if (!m.single && !m.session) show("sessions");
      return;
    case "head": return onHead(m);
    case "snapshot": return onSnapshot(m);
    case "delta": return onDelta(m);
    case "sessions": return renderSessions(m.sessions);
    case "models": return renderModels(m);
    case "halted": say(m.message); return;
    case "error": say(m.message); return;
  }
}

function onHead(h) {
  S.head = h;
  $("head").textContent = h.through;
  const scrub = $("scrub"); scrub.max = Math.max(1, h.through);
  if (!S.paused) { scrub.value = h.through; }
  const session = h.session || {};
  $("session-name").textContent = (session.session_id || "") + (h.location ? "  ·  " + h.location : "");
  const live = h.log_status === "open";
  status(h.status.startsWith("ended") ? "session " + h.status : live ? "live" : "log " + h.log_status,
         h.status.startsWith("ended") ? "" : live ? "good" : "warn");
  const d = $("damage");
  d.hidden = !h.damage;
  if (h.damage) d.textContent = `The log cannot be read past seq ${h.damage.after_seq}: ${h.damage.message} — everything up to seq ${h.damage.after_seq} is shown.`;
}

function onSnapshot(m) {
  S.n[m.channel] = m.n; S.paused = !!m.paused; S.through = m.through; S.ts = m.ts_ns;
  const d = m.data;
  if (m.channel === "market") S.market = d;
  if (m.channel === "trader") S.trader = d;
  if (m.channel === "trades") {
    S.fills = new Map(d.fills.map((f) => [f.trade_id, f]));
    S.orders = new Map(d.orders.map((o) => [o.client_order_id, o]));
    S.decisions = d.decisions; S.models = d.models;
  }
  $("mode").textContent = S.paused ? "scrubbed" : "live view";
  $("mode").className = "pill " + (S.paused ? "warn" : "good");
  if (S.paused) $("scrub").value = m.through;
  dirty = true;
}

function onDelta(m) {
  if (S.paused) return;
  if (m.n !== S.n[m.channel] + 1) { send({ op: "resync" }); S.n[m.channel] = -1e9; return; }
  S.n[m.channel] = m.n; S.through = m.through; S.ts = m.ts_ns;
  const d = m.data;
  if (m.channel === "market") { Object.assign(S.market.markets, d.markets); S.market.health = d.health; }
  if (m.channel === "trader") {
    const { positions, history, ...totals } = d;
    Object.assign(S.trader, totals); Object.assign(S.trader.positions, positions);
    S.trader.history.push(...history);
  }
  if (m.channel === "trades") {
    for (const f of d.fills) S.fills.set(f.trade_id, f);
    for (const o of d.orders) S.orders.set(o.client_order_id, o);
    trim(S.fills, 500); trim(S.orders, 500);
    S.decisions = S.decisions.concat(d.decisions).slice(-200);
    S.models = S.models.concat(d.models);
  }
  dirty = true;
}
function trim(map, n) { while (map.size > n) map.delete(map.keys().next().value); }

// -- rendering --------------------------------------------------------------------------------------
function rows(tbody, items, cells, opts = {}) {
  const html = items.map((it) => {
    const attrs = opts.attrs ? opts.attrs(it) : "";
    return `<tr ${attrs}>` + cells(it).map((c) => typeof c === "object" && c !== null
      ? `<td class="${c.cls || ""}">${esc(c.text)}</td>` : `<td>${esc(c)}</td>`).join("") + "</tr>";
  }).join("");
  tbody.innerHTML = html;
}
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const signed = (u, text) => ({ text, cls: u > 0 ? "pos" : u < 0 ? "neg" : "" });

function render() {
  if (!dirty) return;
  dirty = false;
  $("through").textContent = S.through;
  $("through-time").textContent = time(S.ts);
  const t = S.trader;
  $("cash").textContent = usd(t.cash); $("reserved").textContent = usd(t.reserved);
  $("available").textContent = usd(t.available); $("pnl").textContent = usd(t.pnl);
  $("realized").textContent = usd(t.realized_pnl); $("fees").textContent = usd(t.fees);
  $("fills").textContent = t.fills ?? "—";
  $("open-count").textContent = (t.open_orders || []).length;
  const markets = Object.keys(S.market.markets || {});
  rows($("positions").tBodies[0], markets.map((m) => t.positions[m]).filter(Boolean), (p) => [
    p.market, { text: price(p.best_bid), cls: "bid" }, { text: price(p.best_ask), cls: "ask" },
    { text: count(p.position), cls: "position" }, { text: money(p.cost_basis), cls: "cost" },
    { text: money(p.realized_pnl), cls: "realized" }, { text: money(p.fees), cls: "fees" },
    { text: p.pnl_at_mid === null ? "-" : money(p.pnl_at_mid), cls: "pnl " + (p.pnl_at_mid > 0 ? "pos" : p.pnl_at_mid < 0 ? "neg" : "") }],
    { attrs: (p) => `data-market="${esc(p.market)}"` });
  rows($("open-orders").tBodies[0], t.open_orders || [], (o) => [o.client_order_id, o.market, o.side, price(o.price),
    count(o.remaining), count(o.count), o.live ? "live" : "in flight"], { attrs: (o) => `data-order="${esc(o.client_order_id)}"` });
  renderMarkets(markets);
  renderTrades();
  renderHealth(S.market.health || {});
  if (Date.now() - chartAt > 1000) { chartAt = Date.now(); renderChart(); }
}

function renderMarkets(markets) {
  const M = S.market.markets;
  if (!S.selected || !M[S.selected]) S.selected = markets[0] || null;
  rows($("markets").tBodies[0], markets.map((m) => M[m]), (r) => {
    const last = r.trades.length ? r.trades[r.trades.length - 1] : null;
    const spread = r.best_bid !== null && r.best_ask !== null ? price(r.best_ask - r.best_bid) : "-";
    return [r.market, price(r.best_bid), price(r.best_ask), spread, last ? price(last[2]) : "-", r.updates,
            r.stale ? { text: "stale", cls: "neg" } : "ok"];
  }, { attrs: (r) => `class="clickable${r.market === S.selected ? " selected" : ""}" data-market="${esc(r.market)}"` });
  const r = S.selected && M[S.selected];
  $("ladder-market").textContent = r ? r.market + (r.stale ? " (stale)" : "") : "";
  if (!r) return;
  const asks = r.asks.slice().reverse().map(([p, c]) => ["", { text: price(p), cls: "ask" }, { text: count(c), cls: "ask" }]);
  const bids = r.bids.map(([p, c]) => [{ text: count(c), cls: "bid" }, { text: price(p), cls: "bid" }, ""]);
  rows($("ladder").tBodies[0], asks.concat(bids), (x) => x);
  rows($("last-trades").tBodies[0], r.trades.slice().reverse(), (x) => [x[0], time(x[1]), price(x[2]), count(x[3]), x[4]]);
}

function renderTrades() {
  const orders = Array.from(S.orders.values()).reverse();
  rows($("orders").tBodies[0], orders, (o) => [o.seq, o.client_order_id, o.market, o.side, price(o.price), count(o.count),
    count(o.filled), o.fate || o.state], {
    attrs: (o) => `class="clickable${o.client_order_id === S.order ? " selected" : ""}" data-order="${esc(o.client_order_id)}"` });
  const fills = Array.from(S.fills.values()).reverse();
  rows($("fills-table").tBodies[0], fills, (f) => [f.seq, time(f.ts_ns), f.market, f.side, price(f.price), count(f.count),
    money(f.fee), f.client_order_id]);
  rows($("decisions").tBodies[0], S.decisions.slice().reverse().slice(0, 50), (d) => [d.seq, d.cause_seq, d.market, d.role,
    d.action, d.version]);
  renderTrace();
}

function renderTrace() {
  const o = S.order && S.orders.get(S.order);
  if (!o) return;
  const c = o.cause || {};
  const lines = o.trace.map((d) => `<tr><td>${d.seq}</td><td>${esc(d.role)}</td><td>${esc(d.action)}</td>
    <td>${esc(d.version)}</td><td>${d.score ?? ""}</td><td>${d.size === null ? "" : count(d.size)}</td>
    <td>${d.price === null ? "" : price(d.price)}</td></tr>`).join("");
  $("trace").innerHTML = `<p><b>${esc(o.client_order_id)}</b>: ${esc(o.side)} ${count(o.count)} ${esc(o.market)} at
    ${price(o.price)} (${esc(o.tif)}${o.post_only ? ", post-only" : ""}${o.reduce_only ? ", reduce-only" : ""}) — intent at seq
    ${o.seq}, ${esc(o.fate || o.state)}, filled ${count(o.filled)}.</p>
    <p>Caused by seq <b>${o.cause_seq}</b> (${esc(c.type || "?")}${c.ts_ns ? " at " + time(c.ts_ns) : ""}); the book then:
    bid ${price(c.best_bid)} / ask ${price(c.best_ask)}.</p>
    <table class="trace"><thead><tr><th>seq</th><th>role</th><th>action</th><th>version</th><th>score</th><th>size</th>
    <th>price</th></tr></thead><tbody>${lines || "<tr><td colspan=7>no decision logged for it</td></tr>"}</tbody></table>`;
}

function renderHealth(h) {
  const lat = h.receive_to_log_ms;
  const items = [["connected", h.connected ? "yes" : "no"], ["markets (stale)", `${h.markets ?? 0} (${h.stale_markets ?? 0})`],
    ["seq gaps", h.gaps], ["resyncs", h.resyncs], ["inconsistent deltas", h.inconsistent], ["malformed inputs", h.malformed],
    ["venue errors", h.venue_errors], ["event rate (records/s of event time)", h.event_rate],
    ["receive → log (ms, p50 / p99, as read here)", lat ? `${lat.p50} / ${lat.p99}` : "- (live only)"],
    ["records", h.records]];
  for (const p of (h.problems || []).slice(-5).reverse()) items.push([`seq ${p[0]} ${p[2]}`, p[3]]);
  rows($("health").tBodies[0], items, (x) => x);
}

function renderChart() {
  if (typeof Plotly === "undefined") { $("chart-note").textContent = "plotly.min.js did not load: no chart"; return; }
  const h = S.trader.history || [];
  const x = h.map((p) => new Date(p[0] / 1e6));
  const dollars = (i) => h.map((p) => p[i] / 1e6);
  Plotly.react("chart", [
    { x, y: dollars(4), name: "PnL (net, at mid)", mode: "lines", line: { color: "#3fb950" } },
    { x, y: dollars(2), name: "cash", mode: "lines", yaxis: "y2", line: { color: "#58a6ff" } },
    { x, y: dollars(3), name: "available", mode: "lines", yaxis: "y2", line: { color: "#8a96a3", dash: "dot" } }],
    { paper_bgcolor: "#171d24", plot_bgcolor: "#171d24", font: { color: "#d8dee6", size: 11 },
      margin: { l: 50, r: 60, t: 10, b: 30 }, legend: { orientation: "h" },
      yaxis: { title: "PnL $", gridcolor: "#2a323c" }, yaxis2: { title: "cash $", overlaying: "y", side: "right" },
      xaxis: { gridcolor: "#2a323c" } }, { displayModeBar: false, responsive: true });
}

function renderSessions(list) {
  rows($("sessions").tBodies[0], list, (s) => [s.session_id, s.status, s.mode || "", s.venue || "", time(s.created_ns),
    s.last_seq ?? "", s.error || s.end_reason || ""], { attrs: (s) => `class="clickable" data-session="${esc(s.session_id)}"` });
}

function renderModels(m) {
  rows($("models-loads").tBodies[0], m.loads, (l) => [l.seq, time(l.ts_ns), l.role, l.model_id, l.version_hash.slice(0, 16), l.source]);
  const running = new Set(m.loads.map((l) => l.model_id));
  const root = $("models-registries");
  root.innerHTML = m.registries.length ? "" : `<p class="muted">No model registry: this session ran built-in policies
    (pass --models DIR to show a registry).</p>`;
  m.registries.forEach((reg, i) => {
    const div = document.createElement("section");
    div.className = "panel";
    div.innerHTML = `<h2>${esc(reg.directory)} <span class="muted">latest: ${esc(reg.latest || "-")}</span></h2>
      <table><thead><tr><th>version</th><th>kind</th><th>roles</th><th>frozen</th><th>iterations</th><th>data</th>
      <th>evaluations</th><th>in this session</th></tr></thead><tbody>${reg.versions.map((v) => `<tr>
      <td>${esc(v.version)}</td><td>${esc(v.kind)}</td><td>${esc(v.roles.join(", "))}</td><td>${esc(v.frozen)}</td>
      <td>${esc(v.train.iterations ?? "")}</td><td>${esc(v.data.sessions ? v.data.sessions.length + " sessions" : "")}</td>
      <td>${v.evals.map((e) => e.results.map((r) => `${esc(r.name)} $${Number(r.pnl).toFixed(2)}`).join(", ")).join("; ")}</td>
      <td>${running.has(v.version) ? "loaded" : ""}</td></tr>`).join("")}</tbody></table>
      <div id="curve-${i}" style="height:220px"></div>`;
    root.appendChild(div);
    const traces = reg.versions.flatMap((v) => v.curves.map((c) => ({ y: c.returns, name: v.version, mode: "lines" })));
    if (traces.length && typeof Plotly !== "undefined") {
      Plotly.newPlot(`curve-${i}`, traces, { paper_bgcolor: "#171d24", plot_bgcolor: "#171d24", font: { color: "#d8dee6" },
        margin: { l: 50, r: 10, t: 10, b: 30 }, xaxis: { title: "iteration" }, yaxis: { title: "mean episode return" } },
        { displayModeBar: false });
    } else {
      div.querySelector(`#curve-${i}`).outerHTML = `<p class="muted">No training curve saved beside these versions
        (tape train --json > DIR/&lt;version&gt;/train.json keeps one).</p>`;
    }
  });
  $("models-problems").textContent = m.problems.join("; ");
}

// -- interaction ------------------------------------------------------------------------------------
function show(page) {
  for (const p of ["session", "models", "sessions"]) {
    $("page-" + p).hidden = p !== page; $("tab-" + p).classList.toggle("active", p === page);
  }
  if (page === "models") send({ op: "models" });
  if (page === "sessions") send({ op: "sessions" });
}
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => show(b.dataset.page)));
$("markets").addEventListener("click", (e) => { const tr = e.target.closest("tr[data-market]"); if (tr) { S.selected = tr.dataset.market; dirty = true; } });
$("orders").addEventListener("click", (e) => { const tr = e.target.closest("tr[data-order]"); if (tr) { S.order = tr.dataset.order; dirty = true; } });
$("sessions").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-session]");
  if (!tr) return;
  params.set("session", tr.dataset.session); location.hash = params.toString(); location.reload();
});
let scrubTimer = null;
$("scrub").addEventListener("input", (e) => {
  clearTimeout(scrubTimer);
  scrubTimer = setTimeout(() => send({ op: "seek", seq: Number(e.target.value) }), 150);
});
$("seek-go").addEventListener("click", () => { const n = Number($("seek-seq").value); if (n >= 1) send({ op: "seek", seq: n }); });
$("seek-time-go").addEventListener("click", () => {
  const ms = Date.parse($("seek-time").value);
  if (Number.isNaN(ms)) { say("event time: write it as 2026-01-01T00:00:00.000Z"); return; }
  send({ op: "seek", ts_ms: ms });
});
$("live").addEventListener("click", () => send({ op: "live" }));
$("halt").addEventListener("click", () => { $("halt-token").value = token(); $("halt-confirm").value = ""; $("halt-dialog").showModal(); });
$("halt-send").addEventListener("click", () => send({ op: "halt", token: $("halt-token").value, confirm: $("halt-confirm").value }));

setInterval(render, 100);
connect();
