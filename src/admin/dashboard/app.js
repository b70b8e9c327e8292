// The dashboard: the broker's state from the admin REST API and /metrics
// (Overview, Clients, Subscriptions, Retained, Bridges), and a live topic
// tree over MQTT/WebSocket (Topics). One page, no framework, no build step:
// the broker serves these files as they are.
//
// Files, loaded in this order by index.html as classic scripts sharing one
// global scope: dom.js, api.js, charts.js, views.js, overview.js,
// clients.js, subscriptions.js, retained.js, bridges.js, topics.js, and
// this one, which starts the page.
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
"use strict";

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
