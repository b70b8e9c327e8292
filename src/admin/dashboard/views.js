// The views and their tabs (the URL's fragment), and the 2 s tick that
// samples the Overview and refreshes the shown view.
"use strict";

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
