// Bridges: state, backlog, oldest undelivered, errors, link, pause/resume,
// and a Kafka bridge's partitions and errors by code.
"use strict";

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
      el("div", { className: "kafka" },
        el("p", { className: "kafka-errors" }),
        el("table", { className: "grid kafka-partitions" },
          el("thead", {}, el("tr", {}, ...["topic", "partition", "delivered", "acked offset", "queued", "in flight", "last batch latency", "last ack"]
            .map((h) => el("th", { textContent: h })))),
          el("tbody")),
        el("p", { className: "kafka-more" })),
    );
    return card;
  }

  // Partitions shown per Kafka bridge: the most held back first.
  const KAFKA_ROWS = 50;

  // A Kafka bridge's partitions (what librdkafka holds, then the latency,
  // decide the order) and its errors by code.
  function kafka(box, k) {
    box.hidden = !k;
    if (!k) return;
    const codes = (errors) => Object.entries(errors).map(([c, n]) => `${c} ${n}`).join(", ") || "none";
    const errs = box.querySelector(".kafka-errors");
    errs.textContent = `Kafka: ${k.producer_queued} in librdkafka's queues · record errors: ${codes(k.record_errors)} · client errors: ${codes(k.client_errors)}`;
    errs.classList.toggle("bad", Object.keys(k.record_errors).length > 0);
    const held = (p) => p.queued + p.in_flight;
    const parts = [...k.partitions].sort((a, b) => held(b) - held(a) || (b.delivery_latency_ms ?? 0) - (a.delivery_latency_ms ?? 0));
    syncChildren(box.querySelector("tbody"), parts.slice(0, KAFKA_ROWS), (p) => `${p.topic}/${p.partition}`, () => row(8), (tr, p) => {
      setCells(tr, [p.topic, p.partition, p.delivered, p.acked_offset ?? "—", p.queued, p.in_flight,
        p.delivery_latency_ms === null ? "—" : p.delivery_latency_ms < 1000 ? `${p.delivery_latency_ms} ms` : formatAge(p.delivery_latency_ms),
        p.last_ack_ms ? formatAge(Date.now() - p.last_ack_ms) + " ago" : "—"]);
      tr.classList.toggle("bad", held(p) > 0 && (p.delivery_latency_ms ?? 0) > 60000);
    });
    const more = box.querySelector(".kafka-more");
    const rest = parts.length - KAFKA_ROWS;
    more.textContent = (rest > 0 ? `${rest} more partitions (see /metrics). ` : "") +
      (k.untracked_delivered ? `${k.untracked_delivered} records delivered to partitions past the tracked ones.` : "");
    more.hidden = !more.textContent;
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
    kafka(card.querySelector(".kafka"), b.kafka);
  }
  return refresh;
})();
