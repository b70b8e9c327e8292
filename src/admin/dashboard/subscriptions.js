// Subscriptions of every session (GET /api/v1/subscriptions).
"use strict";

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
