// Clients: search, session and queue depth, drops, subscriptions, kick.
"use strict";

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
