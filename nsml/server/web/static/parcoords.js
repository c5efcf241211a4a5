/* Parallel coordinates in SVG for the runs table (runs.js): one vertical axis per column, one
   <path> per row, coloured by one column, brushed by dragging along the axes.
   Why our own: Plotly's `parcoords` draws with WebGL through regl, which compiles shaders'
   glue with `new Function`; the dashboard's Content-Security-Policy (no 'unsafe-eval') forbids
   that, so it never drew anywhere. SVG needs neither WebGL nor eval, and a page of 1,000 rows
   × 40 axes is 1,000 paths, which browsers handle well as long as a brush only toggles classes.
   The module knows nothing of sessions: it gets axes of numbers (text columns as their rank in
   `cats`), rows with an id and a name, and tells its owner about brushes and hovers. */
"use strict";
NSML.parcoords = {
  HEIGHT: 300,
  MIN_GAP: 22, // px between axes; below it the plot scrolls sideways rather than overlap axes
  LEFT: 56, RIGHT: 104, // room for the first axis' ticks, and for the colour bar
  BAND: 16, // the "—" band under each axis, where a row missing that value goes
  // Viridis at ten stops (perceptually even, readable by the colour-blind); on the dark theme
  // without its two darkest, which vanish into a dark panel.
  VIRIDIS: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  _ids: 0,

  /* box: an empty element; opt: {axes: [{key, label, values: [number|null per row], cats}],
     rows: [{id, name, dash, stroke}] (dash: drawn dotted, e.g. a trial still running; stroke: its own colour), color: {label, values, cats} | null, brush: {key: [[lo, hi], ...]},
     keep(i): false hides row i for reasons of the owner's own (the scatter's selection),
     onBrush(brush) after each drag or clear, onHover(id | null)}. Returns the plot. */
  draw(box, opt) {
    const p = Object.create(NSML.parcoords.plot);
    p.box = box; p.opt = opt; p.keep = opt.keep || (() => true);
    p.brush = Object.fromEntries(Object.entries(opt.brush || {}).map(([k, rs]) => [k, rs.map((r) => [...r])]));
    p.gradId = `pc-grad-${++NSML.parcoords._ids}`;
    box.classList.add("pc");
    p.render();
    // Redraw when the container's width changes (side panel folded, window resized); a frame
    // later, so one drag of the window edge costs one redraw per frame at most.
    let width = box.clientWidth, frame = 0;
    p.resize = new ResizeObserver(() => {
      if (!box.isConnected) { p.resize.disconnect(); return; }
      if (box.clientWidth === width) return;
      width = box.clientWidth;
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => p.render());
    });
    p.resize.observe(box);
    const theme = () => (box.isConnected ? p.render() : document.removeEventListener("nsml-theme", theme));
    document.addEventListener("nsml-theme", theme); // the colour scale follows the theme
    return p;
  },

  /* NSML.el for SVG: attributes, then children (a string is a text node). */
  svg(tag, attrs = {}, ...kids) {
    const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) n.setAttribute(k, v);
    n.append(...kids);
    return n;
  },

  stops: () => (document.documentElement.dataset.theme === "dark" ? NSML.parcoords.VIRIDIS.slice(2) : NSML.parcoords.VIRIDIS),
  /* A colour for t in [0, 1], interpolated between the stops. */
  color(t, s = NSML.parcoords.stops()) {
    const x = Math.min(1, Math.max(0, t)) * (s.length - 1), i = Math.min(s.length - 2, Math.floor(x)), f = x - i;
    const rgb = (h) => [1, 3, 5].map((j) => parseInt(h.slice(j, j + 2), 16));
    const a = rgb(s[i]), b = rgb(s[i + 1]);
    return `rgb(${a.map((v, j) => Math.round(v + (b[j] - v) * f)).join(",")})`;
  },

  /* About n round values (steps of 1, 2 or 5 × 10^k) between lo and hi, both included when round. */
  ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / Math.max(1, n), mag = 10 ** Math.floor(Math.log10(raw)), e = raw / mag;
    const step = mag * (e >= 7.07 ? 10 : e >= 3.16 ? 5 : e >= 1.41 ? 2 : 1);
    const out = [];
    for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) out.push(+(k * step).toPrecision(12));
    return out;
  },

  /* The value range an axis spans: the values' extent; one value alone sits in the middle. */
  domain(axis) {
    if (axis.cats) return axis.cats.length > 1 ? [0, axis.cats.length - 1] : [-1, 1];
    const vs = axis.values.filter((v) => v !== null && Number.isFinite(v));
    if (!vs.length) return [0, 1];
    let lo = Math.min(...vs), hi = Math.max(...vs);
    if (lo === hi) { const d = Math.abs(lo) / 2 || 1; lo -= d; hi += d; }
    return [lo, hi];
  },

  short(text, chars) { return text.length <= chars ? text : `${text.slice(0, Math.max(1, chars - 1))}…`; },
};

NSML.parcoords.plot = {
  /* -- layout: every pixel position, from the box's width -------------------------------------- */
  layout() {
    const P = NSML.parcoords, n = this.opt.axes.length;
    const W = Math.max(this.box.clientWidth || 600, P.LEFT + P.RIGHT + (n - 1) * P.MIN_GAP);
    const gap = n > 1 ? (W - P.LEFT - P.RIGHT) / (n - 1) : W;
    // Labels (about 6.3 px a character) sit flat over their axes when they fit, take turns on
    // two rows when two rows' room fits them, and slant at 30° when axes are closer still; a
    // slanted label needs height above the axes, which the plot adds rather than take it away.
    const longest = Math.max(...this.opt.axes.map((a) => a.label.length)), C = 6.3;
    const labels = n < 2 || longest * C <= gap - 6 ? "flat" : longest * C <= 2 * gap - 8 || gap >= 48 ? "stagger" : "slant";
    const slantChars = Math.min(24, longest);
    const top = { flat: 34, stagger: 48, slant: 22 + Math.ceil(slantChars * C * 0.5) }[labels];
    const H = P.HEIGHT + Math.max(0, top - 48), bottom = H - P.BAND - 14;
    const xs = this.opt.axes.map((_, i) => (n > 1 ? P.LEFT + i * gap : (P.LEFT + W - P.RIGHT) / 2));
    const chars = labels === "slant" ? slantChars : Math.max(3, Math.floor(((labels === "stagger" ? 2 : 1) * Math.min(gap, 2 * P.LEFT) - 8) / C));
    this.L = { W, H, gap, labels, top, bottom, band: bottom + P.BAND, xs, chars };
    this.domains = this.opt.axes.map(P.domain);
  },
  y(i, v) {
    const { top, bottom, band } = this.L, [lo, hi] = this.domains[i];
    return v === null || !Number.isFinite(v) ? band : bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  },
  /* The value at pixel y; the axis' ends give its bounds exactly, so a drag past an end takes
     the extreme rows in despite rounding. */
  value(i, y) {
    const { top, bottom } = this.L, [lo, hi] = this.domains[i];
    if (y <= top) return hi;
    if (y >= bottom) return lo;
    return lo + ((bottom - y) / (bottom - top)) * (hi - lo);
  },

  /* -- drawing: the whole SVG, on first show and on a width change ----------------------------- */
  render() {
    const P = NSML.parcoords, S = P.svg, { axes, rows } = this.opt;
    this.layout();
    this.hotId = null;
    // Two layers: the lines below in an SVG of their own (a compositing layer), axes, brushes
    // and the hovered line above; so a hover or a brush rectangle repaints a few shapes, not
    // a thousand lines.
    const L = this.L, size = { width: L.W, height: L.H };
    const under = S("svg", { class: "pc-under", ...size, "aria-hidden": "true" });
    const svg = S("svg", { class: "pc-svg", ...size, role: "img",
      "aria-label": `Parallel coordinates of ${rows.length} rows over ${axes.map((a) => a.label).join(", ")}` });
    this.ys = rows.map((_, r) => axes.map((a, i) => this.y(i, a.values[r])));
    const col = this.opt.color, cd = col && this.colorDomain(col), stops = P.stops();
    this.lines = S("g", { class: "pc-lines" });
    // Fainter and thinner lines when there are many: dense bundles still show their shape, and
    // 1 px strokes take the rasteriser's fast path.
    this.lines.style.setProperty("--pc-op", rows.length > 300 ? ".35" : rows.length > 60 ? ".6" : ".85");
    this.lines.style.setProperty("--pc-w", rows.length > 60 ? "1" : "2");
    this.paths = rows.map((row, r) => {
      const c = col ? col.values[r] : null;
      const d = this.ys[r].map((y, i) => `${i ? "L" : "M"}${L.xs[i].toFixed(1)},${y.toFixed(1)}`).join("");
      // row.stroke: a colour of the owner's own (one per compared study), which no colour bar explains.
      const stroke = row.stroke || (c === null || !cd ? null : P.color((c - cd[0]) / (cd[1] - cd[0] || 1), stops));
      const path = S("path", { class: "pc-line" + (stroke ? "" : " pc-nocolor") + (row.dash ? " pc-dash" : ""), d, stroke, "data-id": String(row.id) });
      this.lines.append(path);
      return path;
    });
    under.append(this.lines);
    this.halo = S("path", { class: "pc-halo" });
    this.hot = S("path", { class: "pc-hot" });
    svg.append(this.halo, this.hot, ...axes.map((a, i) => this.axis(a, i)));
    if (cd) svg.append(this.colorBar(col, cd));
    this.tip = NSML.el("div", { class: "pc-tip", hidden: true });
    svg.addEventListener("pointermove", (e) => this.hover(e));
    svg.addEventListener("pointerleave", () => this.highlight(null, true));
    NSML.clear(this.box).append(NSML.el("div", { class: "pc-stack", style: `width:${L.W}px;height:${L.H}px` }, under, svg), this.tip);
    this.svgEl = svg;
    this.refilter(true);
  },

  axis(a, i) {
    const P = NSML.parcoords, S = P.svg, L = this.L, x = L.xs[i];
    const g = S("g", { class: "pc-axis", "data-key": a.key });
    let label;
    if (L.labels === "slant") {
      // Up and to the right from the axis' top; the last ones shortened to end inside the plot.
      const fit = Math.floor((L.W - 6 - x) / (6.3 * 0.87)), y = L.top - 10;
      label = S("text", { class: "pc-label", x, y, transform: `rotate(-30 ${x} ${y})` }, P.short(a.label, Math.max(3, Math.min(L.chars, fit))));
    } else {
      // Centred on its axis, unless that would push it off the left edge or into the colour bar.
      const text = P.short(a.label, L.chars), half = (text.length * 6.3) / 2, right = L.W - P.RIGHT + 28;
      const [lx, anchor] = x - half < 2 ? [2, "start"] : x + half > right ? [right, "end"] : [x, "middle"];
      label = S("text", { class: "pc-label", x: lx, y: L.labels === "stagger" && i % 2 ? 32 : L.labels === "stagger" ? 16 : 18, "text-anchor": anchor }, text);
    }
    label.append(S("title", {}, a.label));
    g.append(label, S("line", { class: "pc-axis-line", x1: x, x2: x, y1: L.top, y2: L.bottom }));
    const [lo, hi] = this.domains[i], room = Math.max(2, Math.floor((L.bottom - L.top) / (a.cats ? 13 : 42)));
    let ticks;
    if (a.cats) {
      const every = Math.ceil(a.cats.length / room);
      ticks = a.cats.map((c, k) => [k, P.short(c, 14)]).filter(([k]) => k % every === 0 || k === a.cats.length - 1);
    } else ticks = P.ticks(lo, hi, room).map((v) => [v, NSML.fmt.num(v)]);
    if (a.values.some((v) => v === null)) ticks.push([null, "—"]);
    for (const [v, text] of ticks) {
      const y = this.y(i, v);
      g.append(S("g", { class: "pc-tick" + (v === null ? " pc-none" : "") },
        S("line", { x1: x - 4, x2: x, y1: y, y2: y }), S("text", { x: x - 9, y, "text-anchor": "end", "dominant-baseline": "central" }, text)));
    }
    // The brush handle: a transparent strip along the axis, wider than the line, so a drag
    // needs no pixel-exact aim; the brush rectangles are drawn above it and ignore the mouse.
    const hw = Math.max(6, Math.min(14, L.gap / 2 - 2));
    const hit = S("rect", { class: "pc-hit", x: x - hw, y: L.top - 6, width: 2 * hw, height: L.bottom - L.top + 12 });
    hit.append(S("title", {}, `Drag along ${a.label} to select a range; click to clear it`));
    hit.addEventListener("pointerdown", (e) => this.startBrush(e, i, hit));
    this.brushG = this.brushG || [];
    this.brushG[i] = S("g", { class: "pc-brushes" });
    g.append(hit, this.brushG[i]);
    this.drawBrush(i);
    return g;
  },

  colorDomain(col) {
    const vs = col.values.filter((v) => v !== null && Number.isFinite(v));
    return vs.length ? [Math.min(...vs), Math.max(...vs)] : null;
  },

  /* The colour bar: the scale's gradient, its ends and middle, and the column it shows. */
  colorBar(col, [lo, hi]) {
    const P = NSML.parcoords, S = P.svg, L = this.L, x = L.W - P.RIGHT + 34;
    const grad = S("linearGradient", { id: this.gradId, x1: 0, y1: 1, x2: 0, y2: 0 });
    const stops = P.stops();
    stops.forEach((c, k) => grad.append(S("stop", { offset: k / (stops.length - 1), "stop-color": c })));
    const fmt = (v) => (col.cats ? P.short(col.cats[Math.round(v)] ?? "", 9) : NSML.fmt.num(v));
    const g = S("g", { class: "pc-colorbar" }, S("defs", {}, grad),
      S("rect", { x, y: L.top, width: 10, height: L.bottom - L.top, fill: `url(#${this.gradId})` }));
    const marks = hi > lo ? [[hi, L.top], [(lo + hi) / 2, (L.top + L.bottom) / 2], [lo, L.bottom]] : [[lo, (L.top + L.bottom) / 2]];
    for (const [v, y] of marks) g.append(S("text", { x: x + 14, y, "dominant-baseline": "central" }, fmt(col.cats ? Math.round(v) : +v.toPrecision(4))));
    const mid = (L.top + L.bottom) / 2, title = S("text", { class: "pc-label", x: L.W - 8, y: mid, "text-anchor": "middle", transform: `rotate(-90 ${L.W - 8} ${mid})` },
      `colour: ${P.short(col.label, 30)}`);
    title.append(S("title", {}, `Lines are coloured by ${col.label}`));
    g.append(title);
    return g;
  },

  /* -- brushing ------------------------------------------------------------------------------ */
  passes(r) {
    if (!this.keep(r)) return false;
    return this.opt.axes.every((a, i) => {
      const ranges = this.brush[a.key], v = a.values[r];
      return !ranges || (v !== null && ranges.some(([lo, hi]) => v >= lo && v <= hi));
    });
  },
  /* Faint lines for the rows out of the selection: classes only, never a rebuild. Once a brush
     is done the kept lines move to the front, so faint ones never cross over them. */
  refilter(settled = false) {
    const kept = [];
    this.paths.forEach((path, r) => {
      const ok = this.passes(r);
      if (path.classList.contains("out") === ok) { path.classList.toggle("out", !ok); this._moved = true; }
      if (ok) kept.push(path);
    });
    // Reordering repaints every line: only when the selection changed since the last time.
    if (settled && this._moved && kept.length < this.paths.length) this.lines.append(...kept);
    if (settled) this._moved = false;
  },
  drawBrush(i) {
    const S = NSML.parcoords.svg, L = this.L, x = L.xs[i], key = this.opt.axes[i].key, g = this.brushG[i];
    NSML.clear(g);
    const hw = Math.max(4, Math.min(7, L.gap / 2 - 3)); // narrower than the tick labels' offset
    for (const [lo, hi] of this.brush[key] || []) {
      const y1 = Math.max(L.top, Math.min(L.bottom, this.y(i, hi))), y2 = Math.max(L.top, Math.min(L.bottom, this.y(i, lo)));
      g.append(S("rect", { class: "pc-brush", x: x - hw, y: y1, width: 2 * hw, height: Math.max(2, y2 - y1) }));
    }
    if (this.brush[key]) {
      const top = Math.min(...this.brush[key].map(([, hi]) => Math.max(L.top, Math.min(L.bottom, this.y(i, hi)))));
      const clear = S("text", { class: "pc-clear", x: x + hw + 1, y: top + 1, "dominant-baseline": "hanging" }, "×");
      clear.append(S("title", {}, `Clear the range on ${this.opt.axes[i].label}`));
      clear.addEventListener("pointerdown", (e) => { e.stopPropagation(); e.preventDefault(); });
      clear.addEventListener("click", () => this.setRange(i, null, true));
      g.append(clear);
    }
  },
  setRange(i, range, settled) {
    const key = this.opt.axes[i].key;
    if (range) this.brush[key] = [range]; else delete this.brush[key];
    this.drawBrush(i);
    if (settled) { this.refilter(true); if (this.opt.onBrush) this.opt.onBrush(this.brush); }
    else if (!this._frame) this._frame = requestAnimationFrame(() => { this._frame = 0; this.refilter(); });
  },
  localY(e) { return e.clientY - this.svgEl.getBoundingClientRect().top; },
  /* Drag along axis i: the range between where it started and where the pointer is replaces
     the axis' range; a click that never moved clears it. */
  startBrush(e, i, hit) {
    if (e.button !== 0) return;
    e.preventDefault();
    hit.setPointerCapture(e.pointerId);
    const y0 = this.localY(e);
    let moved = false;
    this.brushing = true;
    this.highlight(null, true);
    const range = (y) => { const a = this.value(i, y0), b = this.value(i, y); return [Math.min(a, b), Math.max(a, b)]; };
    const move = (ev) => {
      const y = this.localY(ev);
      if (!moved && Math.abs(y - y0) < 3) return;
      moved = true;
      this.setRange(i, range(y), false);
    };
    const up = (ev) => {
      hit.removeEventListener("pointermove", move); hit.removeEventListener("pointerup", up); hit.removeEventListener("pointercancel", up);
      this.brushing = false;
      this.setRange(i, moved ? range(this.localY(ev)) : null, true);
    };
    hit.addEventListener("pointermove", move); hit.addEventListener("pointerup", up); hit.addEventListener("pointercancel", up);
  },

  /* -- hovering: the line nearest the pointer (within 8 px), found by arithmetic rather than
     by hit-testing 1.5 px strokes -------------------------------------------------------------- */
  hover(e) {
    if (this.brushing || !this.paths.length) return;
    const box = this.svgEl.getBoundingClientRect(), x = e.clientX - box.left, y = e.clientY - box.top, xs = this.L.xs;
    let j = 0;
    while (j < xs.length - 2 && x > xs[j + 1]) j++;
    const t = xs.length > 1 ? Math.max(0, Math.min(1, (x - xs[j]) / (xs[j + 1] - xs[j]))) : 0;
    let best = -1, dist = 8;
    this.ys.forEach((ys, r) => {
      const d = Math.abs(ys[j] + t * ((ys[j + 1] ?? ys[j]) - ys[j]) - y) + (this.paths[r].classList.contains("out") ? 4 : 0);
      if (d < dist) { dist = d; best = r; }
    });
    const id = best < 0 ? null : this.opt.rows[best].id;
    this.highlight(id, true);
    if (best >= 0) {
      const col = this.opt.color, c = col ? col.values[best] : null;
      const shown = c === null ? "" : ` · ${col.label} ${col.cats ? col.cats[c] : NSML.fmt.num(c)}`;
      this.tip.textContent = `${this.opt.rows[best].name}${shown}`;
      this.tip.style.left = `${Math.min(x + 14, this.L.W - 220)}px`;
      this.tip.style.top = `${y + 14}px`;
    }
  },
  /* Draw row id above the others (a halo and a thick copy of its line); fromPlot tells the
     owner, so the table can mark the row too. */
  highlight(id, fromPlot = false) {
    if (id === this.hotId) return;
    this.hotId = id;
    const r = id === null ? -1 : this.opt.rows.findIndex((row) => String(row.id) === String(id));
    const path = this.paths[r];
    for (const p of [this.halo, this.hot]) p.setAttribute("d", path ? path.getAttribute("d") : "");
    // A style, not an attribute: presentation attributes cannot read CSS variables.
    if (path) this.hot.style.stroke = path.classList.contains("pc-nocolor") || path.classList.contains("out") ? "var(--fg)" : path.getAttribute("stroke");
    this.tip.hidden = !path || !fromPlot;
    if (fromPlot && this.opt.onHover) this.opt.onHover(path ? id : null);
  },
};
