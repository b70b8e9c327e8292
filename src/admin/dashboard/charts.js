// Line charts on a canvas, for the Overview, Bridges and Topics views.
"use strict";

const PALETTE = ["--accent", "--ok", "--warn", "--bad", "--violet", "--orange", "--muted"];

// Draws `series` ([{name, points: [{at, v}]}]) over the last `windowMs`
// (at least `minSpanMs`, and back to `since` when given: charts of one
// sampler share their time axis), a legend with each series' last value, and
// sets the canvas's data-points (the most points of any series) and
// data-max. `zero`: the y axis starts at 0 (counts, rates).
function drawLines(canvas, series, { now, windowMs, minSpanMs = 30000, since = now, zero = true, empty = "no data yet" }) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return; // not shown
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const color = (i) => css.getPropertyValue(PALETTE[i % PALETTE.length]).trim() || "#4cc2ff";
  const fg = css.getPropertyValue("--muted").trim() || "#888";
  const grid = css.getPropertyValue("--grid").trim() || "#333";

  const shown = series.map((s, i) => ({ ...s, color: color(i), points: s.points.filter((p) => now - p.at <= windowMs) }))
    .filter((s) => s.points.length);
  const most = Math.max(0, ...shown.map((s) => s.points.length));
  canvas.dataset.points = most;
  const left = 52, right = 12, top = 22, bottom = 22;
  ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
  ctx.fillStyle = fg;
  if (!most) {
    canvas.dataset.max = "0";
    ctx.fillText(empty, left, h / 2);
    return;
  }
  let min = Infinity, max = -Infinity, first = since;
  for (const s of shown) {
    for (const p of s.points) {
      min = Math.min(min, p.v);
      max = Math.max(max, p.v);
      first = Math.min(first, p.at);
    }
  }
  canvas.dataset.max = max;
  if (zero) min = Math.min(0, min);
  if (max - min < 1e-9) { max += 1; if (!zero) min -= 1; }
  if (!zero) {
    const pad = (max - min) * 0.1;
    min -= pad; max += pad;
  }
  // Grid lines at round values: 1, 2 or 5 times a power of ten apart.
  const raw = (max - min) / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = mag * [1, 2, 5, 10].find((f) => f * mag >= raw);
  min = Math.floor(min / step) * step;
  max = Math.ceil((max + (zero ? step * 0.2 : 0)) / step) * step;
  const decimals = step >= 1 ? 0 : Math.ceil(-Math.log10(step) - 1e-9);
  const span = Math.min(windowMs, Math.max(minSpanMs, now - first));
  const x = (at) => left + (w - left - right) * (1 - (now - at) / span);
  const y = (v) => top + (h - top - bottom) * (1 - (v - min) / (max - min));

  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  for (let v = min; v <= max + step / 2; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
    ctx.fillText(Math.abs(v) >= 1e4 ? formatNumber(v) : v.toFixed(decimals), left - 6, yy + 4);
  }
  ctx.textAlign = "center";
  const tick = [10, 30, 60, 120, 300].find((t) => span / 1000 / t <= 6) || 600;
  for (let t = 0; t <= span / 1000; t += tick) {
    const xx = Math.round(x(now - t * 1000)) + 0.5;
    ctx.fillText(t === 0 ? "now" : tick < 60 ? "-" + t + " s" : "-" + t / 60 + " min", xx, h - 6);
  }

  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  for (const s of shown) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    s.points.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.at), y(p.v)) : ctx.lineTo(x(p.at), y(p.v))));
    ctx.stroke();
    const last = s.points[s.points.length - 1];
    ctx.fillStyle = s.color;
    ctx.beginPath();
    ctx.arc(x(last.at), y(last.v), 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  // The legend, right-aligned: "name last-value" per series.
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.textAlign = "right";
  let at = w - right;
  for (const s of shown.slice().reverse()) {
    const label = `${s.name} ${formatNumber(s.points[s.points.length - 1].v)}`;
    ctx.fillStyle = s.color;
    ctx.fillText(label, at, 14);
    at -= ctx.measureText(label).width + 14;
  }
}
