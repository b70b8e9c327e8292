// Topics: a live topic tree over MQTT/WebSocket (mqtt-ws.js), the
// broker's ws/wss listeners or the admin listener's /mqtt.
"use strict";

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
