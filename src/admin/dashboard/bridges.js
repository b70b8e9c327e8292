// Bridges: state, backlog, oldest undelivered, errors, link, pause/resume.
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
