// The dashboard: the broker's state from the admin REST API and /metrics
// (Overview, Clients, Subscriptions, Retained, Bridges), and a live topic
// tree over MQTT/WebSocket (Topics). One page, no framework, no build step:
// the broker serves these files as they are.
//
// Sections of this file: the admin API (token, calls), small DOM helpers,
// line charts, the views and their tabs, the Overview sampler (every 2 s,
// 10 minutes kept), Clients, Subscriptions, Retained, Bridges, Topics, start.
//
// Query parameters: ?url=wss://host:port/mqtt (skip config.json),
// ?filter=sensors/%23, ?mqtt=4 (MQTT 3.1.1 instead of 5), ?field=humidity.
// The view is the URL's fragment: #overview (default), #clients, #topics...
//
// Elements a test can read: #state[data-state] (connecting, connected,
// disconnected, error), #url, the canvases' data-points (samples drawn) and
// data-max, rows with data-client / data-filter / data-topic, bridge cards
// with data-bridge and their .bridge-state[data-state]; the Topics view's
// #rate (messages/s over the last 5 s), #total, #topic-count, rows of #tree
// with data-topic (and .value, .age, .count inside), #chart[data-points]
// [data-topic][data-field].
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  // === the admin REST API ===================================================
  // Relative to /dashboard/, so the page also works behind a path prefix.
  const API = "../api/v1/";
  const METRICS = "../metrics";
  const TOKEN_KEY = "sluice.admin-token";
  const auth = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    // Set when the API refused us: no more calls until a token is given
    // (or, without a token configured, at all: only loopback may call).
    blocked: false,
    required: null, // from config.json's token_required; null: unknown
  };

  class ApiError extends Error {}

  // Calls the admin API; resolves to the JSON answer (or text for /metrics).
  async function call(path, { method = "GET", text = false } = {}) {
    if (auth.blocked) throw new ApiError("waiting for the admin token");
    const headers = {};
    if (auth.token) headers.Authorization = "Bearer " + auth.token;
    const res = await fetch(path.startsWith("../") ? path : API + path, { method, headers, cache: "no-store" });
    if (res.status === 401) {
      const why = await res.json().catch(() => ({}));
      refused(res.headers.has("WWW-Authenticate"), why.error);
      throw new ApiError(why.error || "unauthorized");
    }
    const answer = text ? await res.text() : await res.json().catch(() => ({}));
    if (!res.ok) throw new ApiError((answer && answer.error) || "HTTP " + res.status);
    return answer;
  }

  // A 401 with WWW-Authenticate wants the token; without it the broker has
  // no token and serves loopback clients only: a token cannot help.
  function refused(wantsToken, message) {
    auth.blocked = true;
    if (wantsToken) {
      showTokenForm(auth.token ? "The admin API refused this token. Enter the right one." : null);
    } else {
      showApiError((message || "the admin API refused the page") +
        ". Open the dashboard from this machine, or configure admin.token_file.");
    }
  }

  function showTokenForm(why) {
    const form = $("token-form");
    form.hidden = false;
    $("token-why").textContent = why ||
      "This admin API needs its bearer token (admin.token_file or admin.token_env).";
    $("token").focus();
  }

  // The API cannot be reached or refuses the page (cleared by the next
  // tick that works).
  function showApiError(message) {
    const p = $("api-error");
    p.hidden = !message;
    p.textContent = message || "";
  }

  // The outcome of an operator's action (kick, delete, pause), for a while.
  let noticeTimer = null;
  function notice(message, bad = false) {
    const p = $("notice");
    p.textContent = message;
    p.hidden = false;
    p.classList.toggle("bad", bad);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { p.hidden = true; }, 8000);
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    auth.token = token;
    auth.blocked = false;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("token-form").hidden = true;
    tick();
    topics.reconnectNow();
  });

  // The WebSocket subprotocol carrying the token to the admin listener's
  // MQTT endpoint (a browser cannot set headers on a WebSocket).
  function bearerProtocol(token) {
    const bytes = new TextEncoder().encode(token);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return "sluice.bearer." + btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // === DOM helpers ==========================================================

  function el(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "dataset") Object.assign(e.dataset, v);
      else if (k in e) e[k] = v;
      else e.setAttribute(k, v);
    }
    e.append(...children);
    return e;
  }

  // Brings `container`'s children in line with `items`, keyed: existing
  // elements are updated in place (a click on them survives a refresh),
  // new ones created, gone ones removed, the order follows `items`.
  function syncChildren(container, items, key, create, update) {
    const old = new Map([...container.children].map((c) => [c.dataset.key, c]));
    let prev = null;
    for (const item of items) {
      const k = key(item);
      let e = old.get(k);
      if (e) old.delete(k);
      else { e = create(item); e.dataset.key = k; }
      update(e, item);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (e !== want) container.insertBefore(e, want);
      prev = e;
    }
    for (const e of old.values()) e.remove();
  }

  // A table row of `n` cells; `setCells` fills them by position.
  const row = (n, props) => el("tr", props, ...Array.from({ length: n }, () => el("td")));
  function setCells(tr, values) {
    values.forEach((v, i) => {
      const td = tr.children[i];
      const s = v === null || v === undefined ? "" : String(v);
      if (td.textContent !== s) td.textContent = s;
    });
  }

  function formatAge(ms) {
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function formatNumber(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (Number.isInteger(v)) return String(v);
    return v.toFixed(a < 10 ? 2 : 1);
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
    return (n / 1073741824).toFixed(1) + " GiB";
  }

  const clock = (ms) => (ms ? new Date(ms).toLocaleString() : "—");

  // === line charts ==========================================================

  const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--violet", "--orange", "--muted"];

  // Draws `series` ([{name, points: [{at, v}]}]) over the last `windowMs`
  // (at least `minSpanMs`, and back to `since` when given: charts of one
  // sampler share their time axis), a legend with each series' last value, and
  // sets the canvas's data-points (the most points of any series) and
  // data-max. `zero`: the y axis starts at 0 (counts, rates).
  function drawLines(canvas, series, { now, windowMs, minSpanMs = 30000, since = now, zero = true, empty = "no data yet" }) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return; // not shown
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const color = (i) => css.getPropertyValue(PALETTE[i % PALETTE.length]).trim() || "#4cc2ff";
    const fg = css.getPropertyValue("--muted").trim() || "#888";
    const grid = css.getPropertyValue("--grid").trim() || "#333";

    const shown = series.map((s, i) => ({ ...s, color: color(i), points: s.points.filter((p) => now - p.at <= windowMs) }))
      .filter((s) => s.points.length);
    const most = Math.max(0, ...shown.map((s) => s.points.length));
    canvas.dataset.points = most;
    const left = 52, right = 12, top = 22, bottom = 22;
    ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
    ctx.fillStyle = fg;
    if (!most) {
      canvas.dataset.max = "0";
      ctx.fillText(empty, left, h / 2);
      return;
    }
    let min = Infinity, max = -Infinity, first = since;
    for (const s of shown) {
      for (const p of s.points) {
        min = Math.min(min, p.v);
        max = Math.max(max, p.v);
        first = Math.min(first, p.at);
      }
    }
    canvas.dataset.max = max;
    if (zero) min = Math.min(0, min);
    if (max - min < 1e-9) { max += 1; if (!zero) min -= 1; }
    if (!zero) {
      const pad = (max - min) * 0.1;
      min -= pad; max += pad;
    }
    // Grid lines at round values: 1, 2 or 5 times a power of ten apart.
    const raw = (max - min) / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = mag * [1, 2, 5, 10].find((f) => f * mag >= raw);
    min = Math.floor(min / step) * step;
    max = Math.ceil((max + (zero ? step * 0.2 : 0)) / step) * step;
    const decimals = step >= 1 ? 0 : Math.ceil(-Math.log10(step) - 1e-9);
    const span = Math.min(windowMs, Math.max(minSpanMs, now - first));
    const x = (at) => left + (w - left - right) * (1 - (now - at) / span);
    const y = (v) => top + (h - top - bottom) * (1 - (v - min) / (max - min));

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (let v = min; v <= max + step / 2; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(Math.abs(v) >= 1e4 ? formatNumber(v) : v.toFixed(decimals), left - 6, yy + 4);
    }
    ctx.textAlign = "center";
    const tick = [10, 30, 60, 120, 300].find((t) => span / 1000 / t <= 6) || 600;
    for (let t = 0; t <= span / 1000; t += tick) {
      const xx = Math.round(x(now - t * 1000)) + 0.5;
      ctx.fillText(t === 0 ? "now" : tick < 60 ? "-" + t + " s" : "-" + t / 60 + " min", xx, h - 6);
    }

    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const s of shown) {
      ctx.strokeStyle = s.color;
      ctx.beginPath();
      s.points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.at), y(p.v)) : ctx.lineTo(x(p.at), y(p.v))));
      ctx.stroke();
      const last = s.points[s.points.length - 1];
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(x(last.at), y(last.v), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
    // The legend, right-aligned: "name last-value" per series.
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.textAlign = "right";
    let at = w - right;
    for (const s of shown.slice().reverse()) {
      const label = `${s.name} ${formatNumber(s.points[s.points.length - 1].v)}`;
      ctx.fillStyle = s.color;
      ctx.fillText(label, at, 14);
      at -= ctx.measureText(label).width + 14;
    }
  }

  // === views ================================================================

  const VIEWS = ["overview", "clients", "subscriptions", "retained", "bridges", "topics"];
  let view = "overview";

  function showView() {
    const want = location.hash.replace(/^#/, "");
    view = VIEWS.includes(want) ? want : "overview";
    for (const v of VIEWS) $("view-" + v).hidden = v !== view;
    for (const a of document.querySelectorAll("#tabs a")) {
      if (a.dataset.view === view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.body.dataset.view = view;
    tick();
  }
  window.addEventListener("hashchange", showView);

  // What each view refreshes while shown: every tick, or every
  // SLOW_REFRESH_MS for the lists gathered from every session or topic
  // (a large broker's are big, and change less often than one looks).
  const refreshers = {};
  const SLOW_REFRESH_MS = 10000;
  const slow = new Set(["subscriptions", "retained"]);
  let refreshed = { view: null, at: 0 };
  function due() {
    return refreshed.view !== view || !slow.has(view) || Date.now() - refreshed.at >= SLOW_REFRESH_MS;
  }

  // Every 2 s: a sample for the charts (always, so they have history when
  // opened), then the shown view.
  const SAMPLE_MS = 2000;
  let ticking = false;
  let again = false; // asked for while a tick ran (a new view): run once more
  async function tick() {
    if (ticking) {
      again = true;
      return;
    }
    ticking = true;
    try {
      await overview.sample();
      if (refreshers[view] && due()) {
        const shown = view;
        await refreshers[shown]();
        refreshed = { view: shown, at: Date.now() };
      }
      showApiError(null);
    } catch (e) {
      if (!(e instanceof ApiError)) showApiError("cannot reach the broker's admin API: " + e.message);
      else if (!auth.blocked) showApiError(e.message);
    } finally {
      ticking = false;
    }
    overview.draw();
    if (again) {
      again = false;
      tick();
    }
  }

  // === Overview: sampled from /api/v1/broker and /metrics ===================

  const overview = (() => {
    const KEEP_MS = 10 * 60 * 1000;
    const samples = []; // {at, counters and gauges read from /metrics}

    // OpenMetrics text: "name{labels} value" lines; `#` lines are skipped.
    function parseMetrics(text) {
      const m = new Map();
      for (const line of text.split("\n")) {
        if (!line || line[0] === "#") continue;
        const sp = line.lastIndexOf(" ");
        m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
      }
      return m;
    }
    const sumOf = (m, name) => {
      let n = 0;
      for (const [k, v] of m) if (k === name || k.startsWith(name + "{")) n += v;
      return n;
    };
    // {label value -> number} of one metric.
    function byLabel(m, name, label) {
      const out = {};
      const re = new RegExp(label + '="((?:[^"\\\\]|\\\\.)*)"');
      for (const [k, v] of m) {
        if (!k.startsWith(name + "{")) continue;
        const found = re.exec(k);
        if (found) out[found[1]] = (out[found[1]] || 0) + v;
      }
      return out;
    }

    // Counters whose rate is charted as drops, by reason. Refusals of
    // queued bytes are also in queue_full, and opening waits drop nothing.
    function drops(m) {
      const dropped = byLabel(m, "sluice_messages_dropped_total", "reason");
      const refused = byLabel(m, "sluice_limit_refusals_total", "reason");
      return {
        queue_full: dropped.queue_full || 0,
        too_large: dropped.too_large || 0,
        refused_retained: refused.retained || 0,
        refused_session: refused.sessions || 0,
        refused_connect: refused.connect_too_large || 0,
        bridge_dropped_oldest: sumOf(m, "sluice_bridge_dropped_oldest_total"),
        bridge_dead_lettered: sumOf(m, "sluice_bridge_dead_lettered_total"),
      };
    }

    let broker = null;
    let last = null; // the latest sample

    async function sample() {
      const [b, text] = await Promise.all([call("broker"), call(METRICS, { text: true })]);
      const m = parseMetrics(text);
      broker = b;
      const s = {
        at: Date.now(),
        received: sumOf(m, "sluice_messages_received_total"),
        sent: sumOf(m, "sluice_messages_sent_total"),
        connected: sumOf(m, "sluice_clients_connected"),
        sessions: sumOf(m, "sluice_sessions"),
        offline: byLabel(m, "sluice_sessions", "state").offline || 0,
        queued: sumOf(m, "sluice_queued_messages"),
        inflight: sumOf(m, "sluice_inflight_messages"),
        drops: drops(m),
        backlog: byLabel(m, "sluice_bridge_buffered_records", "bridge"),
        bridgeStates: bridgeStates(m),
      };
      samples.push(s);
      while (samples.length && s.at - samples[0].at > KEEP_MS) samples.shift();
      last = s;
      cards();
    }

    // bridge -> state, from sluice_bridge_state{bridge,state} 1.
    function bridgeStates(m) {
      const out = {};
      for (const [k, v] of m) {
        if (!k.startsWith("sluice_bridge_state{") || v !== 1) continue;
        const name = /bridge="((?:[^"\\]|\\.)*)"/.exec(k), state = /state="(\w+)"/.exec(k);
        if (name && state) out[name[1]] = state[1];
      }
      return out;
    }

    // Per-second rate of a counter between consecutive samples.
    function rate(get) {
      const out = [];
      for (let i = 1; i < samples.length; i++) {
        const dt = (samples[i].at - samples[i - 1].at) / 1000;
        if (dt > 0) out.push({ at: samples[i].at, v: Math.max(0, get(samples[i]) - get(samples[i - 1])) / dt });
      }
      return out;
    }
    const gauge = (get) => samples.map((s) => ({ at: s.at, v: get(s) }));
    const lastRate = (get) => {
      const r = rate(get);
      return r.length ? r[r.length - 1].v : 0;
    };

    function cards() {
      const b = broker, s = last;
      const set = (id, v) => { $(id).textContent = v; };
      set("ov-connected", b.clients_connected);
      // From /metrics, as the chart: every session, the bridges' too.
      set("ov-sessions", `${s.sessions} (${s.offline})`);
      set("ov-in", lastRate((x) => x.received).toFixed(1));
      set("ov-out", lastRate((x) => x.sent).toFixed(1));
      set("ov-queued", `${s.queued} · ${s.inflight}`);
      set("ov-dropped", formatNumber(s.drops.queue_full + s.drops.too_large));
      set("ov-subscriptions", b.subscriptions);
      set("ov-retained", b.retained);
      const states = Object.values(s.bridgeStates);
      const bad = states.filter((x) => x === "failing" || x === "failed").length;
      set("ov-bridges", states.length);
      set("ov-bridges-note", bad ? `bridges · ${bad} failing` : "bridges");
      $("ov-bridges-note").classList.toggle("bad", bad > 0);
      set("ov-uptime", formatAge(b.uptime_secs * 1000));
      set("ov-version", "uptime · v" + b.version);
    }

    function draw() {
      const now = Date.now();
      const opts = { now, windowMs: KEEP_MS, minSpanMs: 60000, since: samples.length ? samples[0].at : now };
      if (view === "overview") {
        drawLines($("chart-rates"), [
          { name: "in", points: rate((s) => s.received) },
          { name: "out", points: rate((s) => s.sent) },
        ], opts);
        drawLines($("chart-clients"), [
          { name: "connected", points: gauge((s) => s.connected) },
          { name: "offline sessions", points: gauge((s) => s.offline) },
        ], opts);
        // Only the reasons that dropped something in the window.
        const reasons = last ? Object.keys(last.drops) : [];
        const dropSeries = reasons.map((r) => ({ name: r, points: rate((s) => s.drops[r]) }))
          .filter((sr) => sr.points.some((p) => p.v > 0));
        drawLines($("chart-drops"), dropSeries, { ...opts, empty: "no drops in the last 10 minutes" });
        $("chart-drops").dataset.reasons = dropSeries.map((sr) => sr.name).join(" ");
        $("chart-drops").dataset.samples = Math.max(0, samples.length - 1);
        drawLines($("chart-queues"), [
          { name: "queued", points: gauge((s) => s.queued) },
          { name: "bridge backlog", points: gauge((s) => Object.values(s.backlog).reduce((a, v) => a + v, 0)) },
        ], opts);
      } else if (view === "bridges") {
        const names = last ? Object.keys(last.backlog) : [];
        drawLines($("chart-backlog"), names.map((n) => ({ name: n, points: gauge((s) => s.backlog[n] || 0) })), opts);
      }
    }

    return { sample, draw };
  })();

  // === Clients ==============================================================

  const clients = (() => {
    const PAGE = 100;
    let offset = 0;
    let total = 0;
    let selected = null;
    const tbody = $("clients-table").tBodies[0];

    function query() {
      const q = new URLSearchParams({ offset, limit: PAGE });
      const text = $("clients-q").value.trim();
      if (text) q.set("q", text);
      if ($("clients-connected").value) q.set("connected", $("clients-connected").value);
      return q;
    }

    async function refresh() {
      const page = await call("clients?" + query());
      total = page.total;
      $("clients-total").textContent = page.total === page.items.length
        ? `${page.total} sessions` : `${offset + 1}–${offset + page.items.length} of ${page.total}`;
      syncChildren(tbody, page.items, (c) => c.client_id, create, update);
      if (selected) await detail();
    }

    function create(c) {
      const tr = row(11, { dataset: { client: c.client_id } });
      const kick = el("button", { type: "button", className: "kick danger", textContent: "Kick" });
      kick.addEventListener("click", (ev) => {
        ev.stopPropagation();
        doKick(tr.dataset.client);
      });
      tr.append(el("td", {}, kick));
      tr.addEventListener("click", () => select(tr.dataset.client));
      return tr;
    }

    function update(tr, c) {
      setCells(tr, [
        c.client_id,
        c.connected ? "connected" : "offline",
        c.protocol || "",
        c.address || "",
        c.username || "",
        c.connected_since_ms ? formatAge(Date.now() - c.connected_since_ms) + " ago" : "",
        c.subscriptions, c.inflight, c.queued, c.dropped, c.expired,
      ]);
      tr.children[1].dataset.state = c.connected ? "connected" : "offline";
      tr.children[9].classList.toggle("bad", c.dropped > 0);
      tr.classList.toggle("selected", c.client_id === selected);
      // The broker's own bridge sessions are not the operator's to kick.
      tr.querySelector(".kick").hidden = !c.connected || c.client_id.startsWith("$bridge/");
    }

    async function doKick(id) {
      if (!confirm(`Disconnect client "${id}"? It may reconnect; its session stays as its expiry says.`)) return;
      try {
        await call("clients/" + encodeURIComponent(id), { method: "DELETE" });
        notice(`"${id}" disconnected`);
      } catch (e) {
        notice(`kick ${id}: ${e.message}`, true);
      }
      await refresh().catch(() => {});
    }

    async function select(id) {
      selected = id;
      for (const tr of tbody.rows) tr.classList.toggle("selected", tr.dataset.client === id);
      await detail().catch((e) => showApiError(e.message));
    }

    // The selected client's session and subscriptions.
    async function detail() {
      const box = $("client-detail");
      const id = selected;
      const path = "clients/" + encodeURIComponent(id);
      let info, subs;
      try {
        [info, subs] = await Promise.all([call(path), call(path + "/subscriptions")]);
      } catch (e) {
        if (selected !== id) return;
        box.dataset.client = id;
        box.replaceChildren(el("h3", { textContent: id }), el("p", { className: "empty", textContent: e.message }));
        return;
      }
      if (selected !== id) return;
      box.dataset.client = id;
      const facts = [
        ["state", info.connected ? "connected" : "offline"],
        ["session", info.persistent ? "persistent" : "clean"],
        ["protocol", info.protocol || "—"],
        ["peer", info.address || "—"],
        ["user", info.username || "—"],
        ["keep alive", info.keep_alive + " s"],
        [info.connected ? "connected at" : "last connected", clock(info.connected_since_ms)],
        ["in flight", info.inflight],
        ["queued", info.queued],
        ["dropped", info.dropped],
        ["expired", info.expired],
        ["holds publishers back", info.pushing_back ? "yes" : "no"],
      ];
      const list = el("ul", { className: "subs", id: "client-subs" });
      for (const s of subs.subscriptions) {
        list.append(el("li", { dataset: { filter: s.filter } }, el("code", { textContent: s.filter }),
          el("span", { textContent: `QoS ${s.qos}${s.no_local ? " · no local" : ""}${s.identifier ? " · id " + s.identifier : ""}` })));
      }
      box.replaceChildren(
        el("h3", { textContent: id }),
        el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: String(v) })])),
        el("h4", { textContent: `Subscriptions (${subs.subscriptions.length})` }),
        subs.subscriptions.length ? list : el("p", { className: "empty", textContent: "none" }),
      );
    }

    let typing = null;
    $("clients-q").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { offset = 0; refresh().catch((e) => showApiError(e.message)); }, 250);
    });
    $("clients-connected").addEventListener("change", () => { offset = 0; refresh().catch(() => {}); });
    $("clients-form").addEventListener("submit", (ev) => ev.preventDefault());
    $("clients-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); refresh().catch(() => {}); });
    $("clients-next").addEventListener("click", () => {
      if (offset + PAGE < total) { offset += PAGE; refresh().catch(() => {}); }
    });
    return { refresh, select };
  })();
  refreshers.clients = clients.refresh;

  // === Subscriptions ========================================================

  refreshers.subscriptions = (() => {
    const tbody = $("subs-table").tBodies[0];
    async function refresh() {
      const q = new URLSearchParams({ limit: 500 });
      const text = $("subs-q").value.trim();
      if (text) q.set("q", text);
      const page = await call("subscriptions?" + q);
      $("subs-total").textContent = page.total > page.items.length
        ? `${page.items.length} of ${page.total}` : `${page.total} subscriptions`;
      syncChildren(tbody, page.items, (s) => JSON.stringify([s.client_id, s.filter]), (s) => {
        const tr = row(8, { dataset: { filter: s.filter, client: s.client_id } });
        // The client's id leads to its session in the Clients view.
        tr.children[1].className = "link";
        tr.children[1].addEventListener("click", () => {
          location.hash = "#clients";
          clients.select(s.client_id);
        });
        return tr;
      }, (tr, s) => {
        setCells(tr, [s.filter, s.client_id, s.connected ? "connected" : "offline", s.qos,
          s.no_local ? "yes" : "", s.retain_as_published ? "yes" : "", s.retain_handling, s.identifier ?? ""]);
        tr.children[2].dataset.state = s.connected ? "connected" : "offline";
      });
    }
    let typing = null;
    $("subs-q").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => refresh().catch((e) => showApiError(e.message)), 250);
    });
    $("subs-form").addEventListener("submit", (ev) => ev.preventDefault());
    return refresh;
  })();

  // === Retained =============================================================

  refreshers.retained = (() => {
    const tbody = $("retained-table").tBodies[0];
    async function refresh() {
      const filter = $("retained-filter").value.trim() || "#";
      const page = await call("retained?" + new URLSearchParams({ filter, limit: 500 }));
      $("retained-total").textContent = page.total > page.items.length
        ? `${page.items.length} of ${page.total}` : `${page.total} retained`;
      syncChildren(tbody, page.items, (m) => m.topic, (m) => {
        const tr = row(4, { dataset: { topic: m.topic } });
        const del = el("button", { type: "button", className: "delete danger", textContent: "Delete" });
        del.addEventListener("click", () => remove(m.topic));
        tr.append(el("td", {}, del));
        return tr;
      }, (tr, m) => {
        const payload = m.payload !== undefined ? m.payload : `<${m.bytes} bytes, binary> ${m.payload_base64}`;
        setCells(tr, [m.topic, m.qos, m.bytes, payload.length > 200 ? payload.slice(0, 200) + "…" : payload]);
        tr.children[3].title = payload.slice(0, 2000);
        tr.children[3].className = "payload-cell";
      });
    }
    async function remove(topic) {
      if (!confirm(`Delete the retained message on "${topic}"?`)) return;
      try {
        await call("retained?" + new URLSearchParams({ topic }), { method: "DELETE" });
        notice(`retained message on "${topic}" deleted`);
      } catch (e) {
        notice(`delete ${topic}: ${e.message}`, true);
      }
      await refresh().catch(() => {});
    }
    $("retained-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      refresh().catch((e) => showApiError(e.message));
    });
    return refresh;
  })();

  // === Bridges ==============================================================

  refreshers.bridges = (() => {
    const list = $("bridge-list");

    async function refresh() {
      const { items } = await call("bridges");
      if (!items.length) {
        list.replaceChildren(el("p", { className: "empty", textContent: "No bridges configured ([[bridges]] or bridges_dir)." }));
        return;
      }
      if (list.querySelector(".empty")) list.replaceChildren();
      syncChildren(list, items, (b) => b.name, create, update);
    }

    function create(b) {
      const card = el("article", { className: "panel bridge", dataset: { bridge: b.name } });
      const toggle = el("button", { type: "button", className: "toggle" });
      toggle.addEventListener("click", async () => {
        const action = toggle.dataset.action;
        toggle.disabled = true;
        try {
          update(card, await call(`bridges/${encodeURIComponent(card.dataset.bridge)}/${action}`, { method: "POST" }));
          notice(`bridge ${card.dataset.bridge}: ${action}d`);
        } catch (e) {
          notice(`${action} ${card.dataset.bridge}: ${e.message}`, true);
        } finally {
          toggle.disabled = false;
        }
      });
      card.append(
        el("div", { className: "bridge-head" },
          el("h3", { textContent: b.name }), el("span", { className: "sink" }),
          el("span", { className: "bridge-state" }), toggle),
        el("div", { className: "filters" }),
        el("p", { className: "error" }),
        el("dl", { className: "numbers" }),
        el("div", { className: "link" }),
      );
      return card;
    }

    // Label/value pairs, updated in place.
    function numbers(dl, pairs) {
      syncChildren(dl, pairs, ([k]) => k, ([k]) => el("div", {}, el("dt", { textContent: k }), el("dd")), (div, [, v, bad]) => {
        const dd = div.lastChild;
        if (dd.textContent !== String(v)) dd.textContent = String(v);
        dd.classList.toggle("bad", !!bad);
      });
    }

    function update(card, b) {
      card.querySelector(".sink").textContent = b.sink;
      const state = card.querySelector(".bridge-state");
      state.dataset.state = b.state;
      state.textContent = b.state;
      const toggle = card.querySelector(".toggle");
      toggle.dataset.action = b.state === "paused" ? "resume" : "pause";
      toggle.textContent = b.state === "paused" ? "Resume" : "Pause";
      card.querySelector(".filters").textContent = "filters: " + b.filters.join("  ");
      const err = card.querySelector(".error");
      const since = b.failing_since_ms ? `failing since ${clock(b.failing_since_ms)} (${formatAge(Date.now() - b.failing_since_ms)}). ` : "";
      err.textContent = since + (b.last_error ? "Last error: " + b.last_error : "");
      err.hidden = !err.textContent;
      numbers(card.querySelector(".numbers"), [
        ["backlog", `${b.buffered_records} (${formatBytes(b.buffered_bytes)})`, b.buffered_records > 0],
        ["oldest undelivered", b.oldest_undelivered_ms ? formatAge(b.oldest_undelivered_ms) : "—", b.oldest_undelivered_ms > 60000],
        ["session queued", b.session_queued],
        ["received", b.received],
        ["transformed", b.transformed],
        ["dropped by transform", b.dropped_by_transform],
        ["delivered", b.delivered],
        ["retried", b.retried, b.retried > 0],
        ["dead letters", `${b.dead_lettered} (${formatBytes(b.dead_letter_bytes)}${b.dead_letter_discarded ? ", " + b.dead_letter_discarded + " discarded" : ""})`, b.dead_lettered > 0],
        ["dropped oldest", b.dropped_oldest, b.dropped_oldest > 0],
      ]);
      const link = card.querySelector(".link");
      link.hidden = !b.link;
      if (b.link) {
        const l = b.link;
        link.dataset.connected = l.connected;
        link.textContent = `link: ${l.connected ? "connected" : "down"}${l.session_present ? " (session present)" : ""} · ` +
          `${l.connects} connects · ${l.delivered} delivered · ${l.skipped_completed} skipped on resend · ` +
          `in ${l.inbound_received} (${l.inbound_dropped} dropped)` + (l.last_error ? ` · last error: ${l.last_error}` : "");
      }
    }
    return refresh;
  })();

  // === Topics: live over MQTT/WebSocket ====================================

  const topics = (() => {
    const RATE_WINDOW_MS = 5000;
    const HISTORY = 300; // samples kept per topic for the chart
    const CHART_WINDOW_MS = 120000;
    const ui = {
      state: $("state"), url: $("url"), hint: $("hint"), rate: $("rate"), total: $("total"),
      topicCount: $("topic-count"), tree: $("tree"), empty: $("empty"), form: $("filter-form"),
      filter: $("filter"), selected: $("selected"), field: $("field"), chart: $("chart"),
      payload: $("payload"), meta: $("meta"),
    };

    const topics = new Map(); // topic -> {count, lastAt, text, fields, history, row}
    const nodes = new Map(); // path -> tree node {li, row, childList, topics}
    let arrivals = []; // arrival times within the rate window
    let total = 0;
    let selected = null;
    let field = params.get("field") || null;
    let filter = params.get("filter") || "sensors/#";
    let client = null;
    let candidates = []; // {url, admin} to try, in order
    let attempt = 0;
    let failures = 0;
    let retry = null; // the pending reconnect
    const failed = new Map(); // url -> why it failed last
    ui.filter.value = filter;

    function setState(state, text) {
      ui.state.dataset.state = state;
      ui.state.textContent = text || state;
    }

    // The WebSocket endpoints from config.json: dedicated wss listeners
    // first (TLS whenever offered), then ws, then the admin listener's own
    // endpoint ("admin": true, on this page's origin, which needs the token
    // when token_required).
    function endpoints(cfg) {
      const rank = (l) => (l.admin ? 2 : l.protocol === "wss" ? 0 : 1);
      return (cfg.listeners || []).slice().sort((a, b) => rank(a) - rank(b)).map((l) => {
        if (l.admin) {
          const scheme = location.protocol === "https:" ? "wss" : "ws";
          return { url: `${scheme}://${location.host}${l.path || "/mqtt"}`, admin: true };
        }
        return { url: `${l.protocol}://${location.hostname}:${l.port}${l.path || "/mqtt"}`, admin: false };
      });
    }

    function connect() {
      retry = null;
      const { url, admin } = candidates[attempt % candidates.length];
      ui.url.textContent = url;
      setState("connecting", "connecting…");
      const c = new MqttWs(url, {
        version: params.get("mqtt") === "4" ? 4 : 5,
        keepAlive: 30,
        protocols: admin && auth.token ? [bearerProtocol(auth.token)] : [],
      });
      client = c;
      c.onconnect = () => {
        failures = 0;
        failed.delete(url);
        setState("connected");
        showHint();
        c.subscribe(filter, 1);
      };
      c.onsuback = (f, codes) => {
        if (codes.some((code) => code >= 0x80)) {
          setState("error", "subscription to " + f + " refused (0x" + codes[0].toString(16) + ")");
        }
      };
      c.onmessage = onMessage;
      c.onclose = (info) => {
        if (client !== c) return; // replaced on purpose
        client = null;
        if (!info.connected) {
          failed.set(url, info.reason);
          attempt++; // try the next listener
          if (admin && auth.required && !auth.token) showTokenForm();
        }
        failures++;
        const delay = Math.min(10000, 500 * 2 ** Math.min(failures, 5));
        setState(info.connected ? "disconnected" : "error",
          (info.connected ? "disconnected: " : "cannot connect: ") + info.reason +
          " — retrying in " + Math.round(delay / 1000) + " s");
        showHint();
        retry = setTimeout(connect, delay);
      };
      c.open();
    }

    // After a token is given: a pending retry starts now.
    function reconnectNow() {
      if (!retry) return;
      clearTimeout(retry);
      failures = 0;
      connect();
    }

    // A browser gives no detail on a refused WSS certificate: say what to try.
    function showHint() {
      const bad = [...failed.keys()].filter((u) => u.startsWith("wss://"));
      if (!bad.length) {
        ui.hint.hidden = true;
        return;
      }
      const https = bad[0].replace(/^wss:/, "https:").replace(/\/[^/]*$/, "/");
      ui.hint.hidden = false;
      ui.hint.innerHTML = "";
      ui.hint.append("Could not connect to " + bad[0] + ". With a development certificate, open ");
      ui.hint.append(el("a", { href: https, target: "_blank", textContent: https }));
      ui.hint.append(" once and accept it, or trust the development CA (certs/generate.sh).");
    }

    ui.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const next = ui.filter.value.trim();
      if (!next || next === filter) return;
      if (client && client.connected) {
        client.unsubscribe(filter);
        client.subscribe(next, 1);
      }
      filter = next;
      clearTree();
      const q = new URLSearchParams(location.search);
      q.set("filter", filter);
      history.replaceState(null, "", "?" + q.toString() + location.hash);
    });

    function decode(payload) {
      let text;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
      } catch (_) {
        return { text: `<${payload.length} bytes, binary>`, fields: null, json: null };
      }
      let json = null;
      try {
        json = JSON.parse(text);
      } catch (_) {
        // not JSON: shown as text
      }
      const fields = {};
      if (typeof json === "number") {
        fields.value = json;
      } else if (json && typeof json === "object" && !Array.isArray(json)) {
        for (const [k, v] of Object.entries(json)) if (typeof v === "number") fields[k] = v;
      } else if (json === null && text.trim() !== "" && !isNaN(Number(text))) {
        fields.value = Number(text);
      }
      return { text, json, fields: Object.keys(fields).length ? fields : null };
    }

    function summary(d) {
      if (d.json && typeof d.json === "object" && !Array.isArray(d.json)) {
        return Object.entries(d.json)
          .filter(([k]) => k !== "ts")
          .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`)
          .join(" · ");
      }
      return d.text;
    }

    function onMessage(topic, payload, info) {
      const now = Date.now();
      total++;
      arrivals.push(now);
      const d = decode(payload);
      let t = topics.get(topic);
      if (!t) {
        t = { count: 0, lastAt: 0, history: [], row: null };
        topics.set(topic, t);
        t.row = addToTree(topic);
      }
      t.count++;
      t.lastAt = now;
      t.text = d.text;
      t.json = d.json;
      t.fields = d.fields;
      t.retain = info.retain;
      if (d.fields) {
        t.history.push({ at: now, fields: d.fields });
        if (t.history.length > HISTORY) t.history.splice(0, t.history.length - HISTORY);
      }
      t.dirty = true;
      if (!selected && d.fields) select(topic);
    }

    function clearTree() {
      topics.clear();
      nodes.clear();
      ui.tree.innerHTML = "";
      selected = null;
      arrivals = [];
      ui.selected.textContent = "—";
      ui.payload.textContent = "";
      ui.field.innerHTML = "";
    }

    // Creates the rows for every level of `topic` that is not there yet, in
    // sorted order among their siblings; returns the topic's row.
    function addToTree(topic) {
      const levels = topic.split("/");
      let parentList = ui.tree;
      let path = "";
      let node = null;
      for (let i = 0; i < levels.length; i++) {
        path = i === 0 ? levels[0] : path + "/" + levels[i];
        node = nodes.get(path);
        if (!node) {
          node = makeNode(levels[i], path, i);
          nodes.set(path, node);
          const siblings = [...parentList.children];
          const after = siblings.find((li) => li.dataset.name.localeCompare(levels[i], undefined, { numeric: true }) > 0);
          parentList.insertBefore(node.li, after || null);
        }
        node.topics++;
        parentList = node.childList;
      }
      node.row.dataset.topic = topic;
      node.row.classList.add("leaf");
      return node.row;
    }

    function makeNode(name, path, depth) {
      const li = el("li", { dataset: { name } });
      const twist = el("span", { className: "twist" });
      const r = el("div", { className: "row", dataset: { path } }, twist,
        el("span", { className: "name", textContent: name === "" ? "(empty)" : name }),
        el("span", { className: "value" }), el("span", { className: "age" }), el("span", { className: "count" }));
      r.style.setProperty("--depth", depth);
      const childList = el("ul");
      li.append(r, childList);
      r.addEventListener("click", () => {
        if (r.dataset.topic) select(r.dataset.topic);
        else li.classList.toggle("collapsed");
      });
      twist.addEventListener("click", (ev) => {
        ev.stopPropagation();
        li.classList.toggle("collapsed");
      });
      return { li, row: r, childList, topics: 0 };
    }

    function renderTree(now) {
      for (const [topic, t] of topics) {
        const r = t.row;
        if (t.dirty) {
          t.dirty = false;
          r.querySelector(".value").textContent = summary(t);
          r.querySelector(".count").textContent = t.count;
          r.classList.toggle("retained", !!t.retain);
          r.classList.remove("flash");
          void r.offsetWidth; // restart the highlight animation
          r.classList.add("flash");
        }
        r.querySelector(".age").textContent = formatAge(now - t.lastAt);
        r.classList.toggle("selected", topic === selected);
      }
      for (const node of nodes.values()) {
        if (!node.row.dataset.topic) {
          node.row.querySelector(".count").textContent = node.topics > 1 ? node.topics + " topics" : "";
        }
      }
      ui.empty.hidden = topics.size > 0;
    }

    function select(topic) {
      selected = topic;
      ui.selected.textContent = topic;
      updateFields();
    }

    function updateFields() {
      const t = topics.get(selected);
      const names = t && t.fields ? Object.keys(t.fields) : [];
      const have = [...ui.field.options].map((o) => o.value);
      if (names.join() !== have.join()) {
        ui.field.innerHTML = "";
        for (const n of names) ui.field.append(new Option(n, n));
      }
      if (!names.includes(field)) {
        field = ["temperature", "value"].find((n) => names.includes(n)) || names[0] || null;
      }
      if (field) ui.field.value = field;
    }

    ui.field.addEventListener("change", () => {
      field = ui.field.value;
    });

    function drawChart(now) {
      const t = topics.get(selected);
      const points = t && field
        ? t.history.filter((s) => field in s.fields).map((s) => ({ at: s.at, v: s.fields[field] })) : [];
      ui.chart.dataset.topic = selected || "";
      ui.chart.dataset.field = field || "";
      if (t) {
        ui.payload.textContent = t.json !== null && t.json !== undefined ? JSON.stringify(t.json, null, 2) : t.text;
        ui.meta.textContent = `${t.count} messages · last ${formatAge(now - t.lastAt)} ago${t.retain ? " · retained" : ""}`;
      }
      drawLines(ui.chart, [{ name: field || "", points }], {
        now, windowMs: CHART_WINDOW_MS, zero: false,
        empty: selected ? "no numeric field yet" : "select a topic",
      });
    }

    function refresh() {
      const now = Date.now();
      while (arrivals.length && now - arrivals[0] > RATE_WINDOW_MS) arrivals.shift();
      ui.rate.textContent = (arrivals.length / (RATE_WINDOW_MS / 1000)).toFixed(1);
      ui.total.textContent = total;
      ui.topicCount.textContent = topics.size;
      renderTree(now);
      if (selected) updateFields();
      if (view === "topics") drawChart(now);
    }
    setInterval(refresh, 250);

    // `url`: the ?url= parameter, tried alone; it is the admin endpoint
    // when it is on this page's host and port.
    function start(cfg, url) {
      candidates = url ? [{ url, admin: new URL(url).host === location.host }] : endpoints(cfg);
      if (!candidates.length) {
        setState("error", "the broker has no WebSocket endpoint");
        ui.hint.hidden = false;
        ui.hint.textContent = 'Add a listener with protocol = "wss" (or "ws") to the configuration, or open this page with ?url=wss://host:port/mqtt.';
        return;
      }
      connect();
    }
    return { start, reconnectNow };
  })();

  // === start ================================================================

  (async () => {
    showView();
    setInterval(tick, SAMPLE_MS);
    let cfg;
    try {
      if (params.get("url")) {
        cfg = { listeners: [] };
      } else {
        const res = await fetch("config.json", { cache: "no-store" });
        if (!res.ok) throw new Error("config.json: HTTP " + res.status);
        cfg = await res.json();
      }
    } catch (e) {
      $("state").dataset.state = "error";
      $("state").textContent = "cannot read config.json: " + e.message;
      return;
    }
    // Missing: an older broker, which does not say.
    auth.required = typeof cfg.token_required === "boolean" ? cfg.token_required : null;
    if (auth.required && !auth.token) showTokenForm();
    topics.start(cfg, params.get("url"));
  })();
})();
