// The dashboard: connects back to the broker over WebSocket (wss preferred,
// from config.json), subscribes to a wildcard filter and shows a live topic
// tree (last value, age, count), messages per second and a chart of one
// numeric field of the selected topic.
//
// Query parameters: ?url=wss://host:port/mqtt (skip config.json),
// ?filter=sensors/%23, ?mqtt=4 (MQTT 3.1.1 instead of 5), ?field=humidity.
//
// Elements a test can read: #state[data-state] (connecting, connected,
// disconnected, error), #url, #rate (messages/s over the last 5 s), #total,
// #topic-count, rows of #tree with data-topic="the/topic" (and .value,
// .age, .count inside), #chart[data-points][data-topic][data-field].
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const RATE_WINDOW_MS = 5000;
  const HISTORY = 300; // samples kept per topic for the chart
  const CHART_WINDOW_MS = 120000;

  const ui = {
    state: $("state"), url: $("url"), hint: $("hint"), rate: $("rate"), total: $("total"),
    topicCount: $("topic-count"), tree: $("tree"), empty: $("empty"), form: $("filter-form"),
    filter: $("filter"), selected: $("selected"), field: $("field"), chart: $("chart"),
    payload: $("payload"), meta: $("meta"),
  };

  // --- state ---
  const topics = new Map(); // topic -> {count, lastAt, text, fields, history, row}
  const nodes = new Map(); // path -> tree node {li, row, childList, topics}
  let arrivals = []; // arrival times within the rate window
  let total = 0;
  let selected = null;
  let field = params.get("field") || null;
  let filter = params.get("filter") || "sensors/#";
  let client = null;
  let candidates = []; // URLs to try, in order
  let attempt = 0;
  let failures = 0;
  const failed = new Map(); // url -> why it failed last
  ui.filter.value = filter;

  // --- connection ---

  function setState(state, text) {
    ui.state.dataset.state = state;
    ui.state.textContent = text || state;
  }

  async function listenerUrls() {
    if (params.get("url")) return [params.get("url")];
    const res = await fetch("config.json", { cache: "no-store" });
    if (!res.ok) throw new Error("config.json: HTTP " + res.status);
    const cfg = await res.json();
    const ls = (cfg.listeners || []).slice();
    // wss first: the dashboard should use TLS whenever the broker offers it.
    ls.sort((a, b) => (a.protocol === "wss" ? 0 : 1) - (b.protocol === "wss" ? 0 : 1));
    return ls.map((l) => `${l.protocol}://${location.hostname}:${l.port}${l.path || "/mqtt"}`);
  }

  function connect() {
    const url = candidates[attempt % candidates.length];
    ui.url.textContent = url;
    setState("connecting", "connecting…");
    const c = new MqttWs(url, { version: params.get("mqtt") === "4" ? 4 : 5, keepAlive: 30 });
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
      }
      failures++;
      const delay = Math.min(10000, 500 * 2 ** Math.min(failures, 5));
      setState(info.connected ? "disconnected" : "error",
        (info.connected ? "disconnected: " : "cannot connect: ") + info.reason +
        " — retrying in " + Math.round(delay / 1000) + " s");
      showHint();
      setTimeout(connect, delay);
    };
    c.open();
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
    const a = document.createElement("a");
    a.href = https;
    a.target = "_blank";
    a.textContent = https;
    ui.hint.append(a, " once and accept it, or trust the development CA (certs/generate.sh).");
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
    history.replaceState(null, "", "?" + q.toString());
  });

  // --- messages ---

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

  // --- the topic tree ---

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
    const li = document.createElement("li");
    li.dataset.name = name;
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.path = path;
    row.style.setProperty("--depth", depth);
    const twist = document.createElement("span");
    twist.className = "twist";
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name === "" ? "(empty)" : name;
    const value = document.createElement("span");
    value.className = "value";
    const age = document.createElement("span");
    age.className = "age";
    const count = document.createElement("span");
    count.className = "count";
    row.append(twist, label, value, age, count);
    const childList = document.createElement("ul");
    li.append(row, childList);
    const node = { li, row, childList, topics: 0 };
    row.addEventListener("click", () => {
      if (row.dataset.topic) {
        select(row.dataset.topic);
      } else {
        li.classList.toggle("collapsed");
      }
    });
    twist.addEventListener("click", (ev) => {
      ev.stopPropagation();
      li.classList.toggle("collapsed");
    });
    return node;
  }

  function formatAge(ms) {
    const s = ms / 1000;
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function renderTree(now) {
    for (const [topic, t] of topics) {
      const row = t.row;
      if (t.dirty) {
        t.dirty = false;
        row.querySelector(".value").textContent = summary(t);
        row.querySelector(".count").textContent = t.count;
        row.classList.toggle("retained", !!t.retain);
        row.classList.remove("flash");
        void row.offsetWidth; // restart the highlight animation
        row.classList.add("flash");
      }
      row.querySelector(".age").textContent = formatAge(now - t.lastAt);
      row.classList.toggle("selected", topic === selected);
    }
    for (const node of nodes.values()) {
      if (!node.row.dataset.topic) {
        node.row.querySelector(".count").textContent = node.topics > 1 ? node.topics + " topics" : "";
      }
    }
    ui.empty.hidden = topics.size > 0;
  }

  // --- selection and chart ---

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
    const canvas = ui.chart;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue("--muted").trim() || "#888";
    const grid = css.getPropertyValue("--grid").trim() || "#333";
    const accent = css.getPropertyValue("--accent").trim() || "#4cc2ff";

    const t = topics.get(selected);
    const points = t && field ? t.history.filter((s) => field in s.fields && now - s.at <= CHART_WINDOW_MS) : [];
    canvas.dataset.points = points.length;
    canvas.dataset.topic = selected || "";
    canvas.dataset.field = field || "";
    if (t) {
      ui.payload.textContent = t.json !== null && t.json !== undefined ? JSON.stringify(t.json, null, 2) : t.text;
      ui.meta.textContent = `${t.count} messages · last ${formatAge(now - t.lastAt)} ago${t.retain ? " · retained" : ""}`;
    }
    const left = 48, right = 12, top = 12, bottom = 22;
    ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
    ctx.fillStyle = fg;
    if (points.length === 0) {
      ctx.fillText(selected ? "no numeric field yet" : "select a topic", left, h / 2);
      return;
    }
    let min = Infinity, max = -Infinity;
    for (const p of points) {
      min = Math.min(min, p.fields[field]);
      max = Math.max(max, p.fields[field]);
    }
    if (max - min < 1e-9) { max += 1; min -= 1; }
    const pad = (max - min) * 0.1;
    min -= pad; max += pad;
    // The time axis spans the data shown: 30 s at least, 2 min at most.
    const span = Math.min(CHART_WINDOW_MS, Math.max(30000, now - points[0].at));
    const x = (at) => left + (w - left - right) * (1 - (now - at) / span);
    const y = (v) => top + (h - top - bottom) * (1 - (v - min) / (max - min));

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i++) {
      const v = min + ((max - min) * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(v.toFixed(Math.abs(max - min) < 10 ? 2 : 0), left - 6, yy + 4);
    }
    ctx.textAlign = "center";
    const step = span > 60000 ? 30 : 10;
    for (let s = 0; s <= span / 1000; s += step) {
      const xx = Math.round(x(now - s * 1000)) + 0.5;
      ctx.fillText(s === 0 ? "now" : "-" + s + " s", xx, h - 6);
    }

    ctx.strokeStyle = accent;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    points.forEach((p, i) => {
      const px = x(p.at), py = y(p.fields[field]);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    const last = points[points.length - 1];
    ctx.fillStyle = accent;
    ctx.beginPath();
    ctx.arc(x(last.at), y(last.fields[field]), 3.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.textAlign = "right";
    ctx.font = "600 13px system-ui, sans-serif";
    ctx.fillText(`${field} ${last.fields[field]}`, w - right, top + 12);
  }

  // --- the refresh loop ---

  function refresh() {
    const now = Date.now();
    while (arrivals.length && now - arrivals[0] > RATE_WINDOW_MS) arrivals.shift();
    ui.rate.textContent = (arrivals.length / (RATE_WINDOW_MS / 1000)).toFixed(1);
    ui.total.textContent = total;
    ui.topicCount.textContent = topics.size;
    renderTree(now);
    if (selected) updateFields();
    drawChart(now);
  }
  setInterval(refresh, 250);

  // --- start ---
  (async () => {
    try {
      candidates = await listenerUrls();
    } catch (e) {
      setState("error", "cannot read config.json: " + e.message);
      return;
    }
    if (!candidates.length) {
      setState("error", "the broker has no WebSocket listener");
      ui.hint.hidden = false;
      ui.hint.textContent = 'Add a listener with protocol = "wss" (or "ws") to the configuration, or open this page with ?url=wss://host:port/mqtt.';
      return;
    }
    connect();
  })();
})();
