// Retained messages: filter, payloads, delete.
"use strict";

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
