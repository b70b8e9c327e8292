// The dashboard's small DOM helpers and number formats, shared by every
// view (classic scripts: these files share one global scope, in the order
// index.html loads them).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);


function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

// Brings `container`'s children in line with `items`, keyed: existing
// elements are updated in place (a click on them survives a refresh),
// new ones created, gone ones removed, the order follows `items`.
function syncChildren(container, items, key, create, update) {
  const old = new Map([...container.children].map((c) => [c.dataset.key, c]));
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let e = old.get(k);
    if (e) old.delete(k);
    else { e = create(item); e.dataset.key = k; }
    update(e, item);
    const want = prev ? prev.nextSibling : container.firstChild;
    if (e !== want) container.insertBefore(e, want);
    prev = e;
  }
  for (const e of old.values()) e.remove();
}

// A table row of `n` cells; `setCells` fills them by position.
const row = (n, props) => el("tr", props, ...Array.from({ length: n }, () => el("td")));
function setCells(tr, values) {
  values.forEach((v, i) => {
    const td = tr.children[i];
    const s = v === null || v === undefined ? "" : String(v);
    if (td.textContent !== s) td.textContent = s;
  });
}

function formatAge(ms) {
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

function formatNumber(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 10 ? 2 : 1);
}

function formatBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1073741824) return (n / 1048576).toFixed(1) + " MiB";
  return (n / 1073741824).toFixed(1) + " GiB";
}

const clock = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
