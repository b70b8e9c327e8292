// Overview: cards and charts sampled from /api/v1/broker and /metrics
// every 2 s, 10 minutes kept.
"use strict";

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
