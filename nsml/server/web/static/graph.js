/* The Graph view: one panel per metric (grouped by the `/` prefix), several sessions overlaid,
   their arguments split into common and differing ones. Every control writes the URL query.
   Zooming asks the server for finer data in the visible range; running sessions update live.
   Raw lines are always drawn; smoothing is drawn over them only where a line has more than
   SMOOTH_ABOVE points in view, so zooming in always shows every point as it was reported. */
"use strict";
NSML.graph = {
  SMOOTH_ABOVE: 200,
  XTITLE: { step: "step", walltime: "wall time", relative: "time since first report (s)" },
  /* base: the session whose page this is (always shown), or null on the compare page. */
  mount(box, base) {
    this.box = NSML.clear(box);
    this.base = base;
    this.panels = new Map(); // key -> div
    this.highlighted = null;
    this.data = null;
    this.tz = new Date().getTimezoneOffset() * 60000; // wall time is drawn in local time
    this.controls();
    this.argsBox = NSML.el("div", { class: "args-box" });
    this.status = NSML.el("div", { class: "load-status muted small" });
    this.body = NSML.el("div", { class: "graph-body" });
    box.append(this.bar, this.argsBox, this.status, this.body);
    this.fetch().then(() => NSML.live.add(NSML.poll(() => this.liveTick(), 1000)));
    if (!this.themed) { this.themed = true; document.addEventListener("nsml-theme", () => this.draw(true)); }
  },

  names() {
    const extra = NSML.state.all("s");
    return this.base ? [this.base, ...extra.filter((n) => n !== this.base)] : extra;
  },
  opt(k, d) { return NSML.state.get(k, d); },

  controls() {
    const x = NSML.el("select", { id: "x-axis", title: "x axis", onchange: (e) => { NSML.state.set({ x: e.target.value, xmin: null, xmax: null }); this.fetch(); } },
      ...["step", "walltime", "relative"].map((v) => NSML.el("option", { value: v, text: v, selected: this.opt("x", "step") === v })));
    const smooth = NSML.el("input", { id: "smoothing", type: "range", min: 0, max: 0.99, step: 0.01, value: this.opt("smooth", "0.6"), title: "EMA smoothing" });
    const smoothVal = NSML.el("span", { class: "mono small", text: Number(smooth.value).toFixed(2) });
    smooth.oninput = () => { smoothVal.textContent = Number(smooth.value).toFixed(2); NSML.state.set({ smooth: smooth.value }); this.draw(); };
    const check = (id, key, label, title) => NSML.el("label", { class: "chk", title },
      NSML.el("input", { id, type: "checkbox", checked: this.opt(key) === "1", onchange: (e) => { NSML.state.set({ [key]: e.target.checked }); this.draw(); } }), label);
    this.groupSel = NSML.el("select", { id: "group-by", title: "One line per group: the mean of its sessions, with a ± sd band",
      onchange: (e) => { NSML.state.set({ group: e.target.value }); this.draw(true); } });
    const filter = NSML.el("input", { id: "metric-filter", type: "search", placeholder: "Filter metrics", value: this.opt("metric", ""),
      oninput: (e) => { NSML.state.set({ metric: e.target.value }); this.draw(true); } });
    const add = NSML.el("input", { id: "add-session", type: "search", placeholder: "Add session OWNER/DATASET/N", list: "session-options",
      onkeydown: (e) => { if (e.key === "Enter" && e.target.value.trim()) { this.addSession(e.target.value.trim()); e.target.value = ""; } } });
    this.options = NSML.el("datalist", { id: "session-options" });
    add.addEventListener("focus", () => this.suggest(), { once: true });
    const reset = NSML.el("button", { type: "button", class: "small", text: "Reset zoom", onclick: () => this.zoom(null, null) });
    this.bar = NSML.el("div", { class: "controls" },
      NSML.el("label", {}, "x ", x), NSML.el("label", { class: "smooth", title: `EMA smoothing, drawn over the raw lines where more than ${this.SMOOTH_ABOVE} points are in view` }, "smoothing ", smooth, smoothVal),
      check("log-scale", "log", "log y", "Logarithmic y axis"), check("mean-sd", "mean", "mean ± sd", "Mean ± sd across the shown sessions"),
      NSML.el("label", {}, "group by ", this.groupSel), filter, add, this.options, reset);
  },

  /* The group-by choices: every parameter the sessions have (typed, defaults included) and tags. */
  groupOptions() {
    const keys = new Set();
    for (const s of this.data.sessions) for (const k of [...Object.keys(s.config || {}), ...Object.keys(s.params || {})]) keys.add(k);
    const want = this.opt("group", "");
    NSML.clear(this.groupSel).append(NSML.el("option", { value: "", text: "—" }), NSML.el("option", { value: "tag", text: "tag", selected: want === "tag" }),
      ...[...keys].filter((k) => k !== "_").sort().map((k) => NSML.el("option", { value: "param:" + k, text: k, selected: want === "param:" + k })));
    if (want && ![...this.groupSel.options].some((o) => o.value === want)) this.groupSel.append(NSML.el("option", { value: want, text: want.replace(/^param:/, ""), selected: true }));
  },
  /* The group label of a session: `lr=0.1`, its tags, or "(no tag)". */
  groupOf(s, by) {
    if (by === "tag") return s.tags?.length ? s.tags.join(", ") : "(no tag)";
    const k = by.replace(/^param:/, "");
    const v = s.config?.[k] ?? s.params?.[k];
    return `${k}=${v === undefined || v === null ? "—" : v}`;
  },

  async suggest() {
    const ds = (this.names()[0] || "").split("/")[1];
    const data = await NSML.api(`/api/web/sessions${NSML.query({ dataset: ds, limit: 200 })}`);
    data.sessions.forEach((s) => this.options.append(NSML.el("option", { value: s.name })));
  },

  addSession(name) {
    const extra = NSML.state.all("s");
    if (!extra.includes(name) && name !== this.base) NSML.state.set({ s: [...extra, name] });
    this.fetch();
  },
  removeSession(name) {
    NSML.state.set({ s: NSML.state.all("s").filter((n) => n !== name), hide: NSML.state.all("hide").filter((n) => n !== name) });
    this.fetch();
  },

  /* About one point per pixel of a panel's plot area: min/max pairs keep every spike visible,
     and 50 sessions x 3 metrics stay well under 2 MB. */
  buckets() {
    const panel = this.body.querySelector(".panel")?.clientWidth || Math.min(this.body.clientWidth || 900, 560);
    return Math.max(100, Math.min(1000, Math.round(panel - 60)));
  },
  request(names) {
    return NSML.api(`/api/web/graph${NSML.query({ s: names, x: this.opt("x", "step"), xmin: this.opt("xmin"), xmax: this.opt("xmax"), buckets: this.buckets() })}`);
  },

  async fetch() {
    const names = this.names();
    if (!names.length) {
      NSML.clear(this.body).append(NSML.el("div", { class: "pad muted", text: "Choose sessions to compare: tick them in the left panel, or add one above." }));
      return;
    }
    this.data = await this.request(names);
    this.groupOptions();
    this.argsTable();
    this.draw(true);
  },

  active() { return (this.data?.sessions || []).filter((s) => s.status === "running" || s.status === "queued"); },
  /* Live: only the running sessions are asked again; finished ones cannot change. */
  async liveTick() {
    const running = this.active().map((s) => s.name);
    if (!running.length) return;
    const fresh = await this.request(running);
    if (fresh.x !== this.data.x || String(fresh.xmin) !== String(this.data.xmin) || String(fresh.xmax) !== String(this.data.xmax)) return; // the view changed meanwhile
    const statusChanged = fresh.sessions.some((s) => this.data.sessions.find((o) => o.name === s.name)?.status !== s.status);
    for (const s of fresh.sessions) {
      this.data.series[s.name] = fresh.series[s.name];
      Object.assign(this.data.sessions.find((o) => o.name === s.name) || {}, s);
    }
    this.data.keys = [...new Set([...this.data.keys, ...fresh.keys])].sort();
    if (statusChanged) this.argsTable();
    this.draw();
  },

  visible() {
    const hidden = new Set(NSML.state.all("hide"));
    return this.data.sessions.filter((s) => !hidden.has(s.name));
  },
  colorOf(name) { return NSML.plots.color(this.data.sessions.findIndex((s) => s.name === name)); },

  toX(v) {
    const kind = this.data.x;
    return kind === "walltime" ? v * 1000 - this.tz : v;
  },
  fromX(v) {
    if (this.data.x !== "walltime") return Number(v);
    const ms = typeof v === "number" ? v : Date.parse(String(v).replace(" ", "T") + "Z");
    return (ms + this.tz) / 1000;
  },

  /* Builds panels for the keys once (fixed heights: live data never moves the layout), then
     redraws traces in place with Plotly.react. */
  /* One panel a plain key, and one for each `NAME@vector:…` / `NAME@stack:…` family. */
  specs() {
    const filter = this.opt("metric", "").toLowerCase(), P = NSML.plots;
    const specs = new Map();
    for (const k of this.data.keys) {
      const { base, kind, elem } = P.parseKey(k);
      if (kind === "std" || kind === "other" || (filter && !base.toLowerCase().includes(filter))) continue;
      const id = kind === "line" ? k : `${base}@${kind}`;
      if (!specs.has(id)) specs.set(id, { id, base, kind, elems: [] });
      if (kind !== "line") specs.get(id).elems.push(elem);
    }
    return [...specs.values()];
  },

  draw(rebuild = false) {
    if (!this.data) return;
    const specs = this.specs(), keys = specs.map((sp) => sp.id);
    const signature = keys.join("|") + "#" + this.data.x + "#" + this.opt("group", "");
    if (rebuild || signature !== this.signature) this.layoutPanels(keys);
    this.signature = signature;
    this.smoothedAny = false;
    for (const sp of specs) this.drawPanel(sp);
    const shown = this.data.sessions.length;
    const counts = Object.values(this.data.series).flatMap((m) => Object.values(m));
    const total = counts.reduce((a, c) => a + c.count, 0), sent = counts.reduce((a, c) => a + c.x.length, 0);
    const exact = counts.every((c) => c.exact);
    const weight = Number(this.opt("smooth", "0.6"));
    NSML.clear(this.status).append(`${shown} session${shown === 1 ? "" : "s"} · ${keys.length} metric${keys.length === 1 ? "" : "s"} · `,
      exact ? `${total} point${total === 1 ? "" : "s"}` : `${sent} of ${total} points (min/max per pixel column)`,
      this.data.xmin !== null && this.data.xmin !== undefined ? " · zoomed" : "",
      weight ? (this.smoothedAny ? " · smoothed over raw" : ` · smoothing off (≤ ${this.SMOOTH_ABOVE} points in view)`) : "",
      this.active().length ? NSML.el("span", { class: "live", text: " · live" }) : "",
      this.data.missing.length ? NSML.el("span", { class: "bad", text: ` · not found: ${this.data.missing.join(", ")}` }) : "");
  },

  layoutPanels(keys) {
    for (const div of this.panels.values()) Plotly.purge(div); // free Plotly's listeners before the divs go
    NSML.clear(this.body);
    this.panels.clear();
    if (!keys.length) {
      this.body.append(NSML.el("div", { class: "pad muted", text: "No metrics yet: the sessions have not called nsml.report()." }));
      return;
    }
    const folded = new Set(NSML.state.all("fold"));
    const groups = new Map();
    for (const k of keys) {
      const g = NSML.plots.group(NSML.plots.parseKey(k).base);
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(k);
    }
    for (const [g, ks] of [...groups.entries()].sort()) {
      const isFolded = folded.has(g || "-");
      const grid = NSML.el("div", { class: "panels", hidden: isFolded });
      const head = NSML.el("button", { type: "button", class: "group-head", "aria-expanded": String(!isFolded),
        text: `${isFolded ? "▸" : "▾"} ${g || "metrics"} (${ks.length})`,
        onclick: () => {
          const f = new Set(NSML.state.all("fold"));
          f.has(g || "-") ? f.delete(g || "-") : f.add(g || "-");
          NSML.state.set({ fold: [...f] });
          this.draw(true);
        } });
      // Groups flow side by side when they are small (two one-metric groups share a row).
      this.body.append(NSML.el("div", { class: "group", style: `flex-basis:${Math.min(ks.length, 3) * 430}px` }, head, grid));
      for (const k of ks) {
        const div = NSML.el("div", { class: "panel", dataset: { key: k } });
        grid.append(div);
        this.panels.set(k, div);
      }
    }
  },

  /* A session's line as drawn: the raw points, and the EMA over them when the line has more
     than SMOOTH_ABOVE points in view (fewer: smoothing would only move the points shown). */
  lineOf(line, weight) {
    const x = line.x.map((v) => this.toX(v)), raw = Array.from(line.y);
    const smooth = weight > 0 && line.count > this.SMOOTH_ABOVE && raw.length > 1;
    if (smooth) this.smoothedAny = true;
    return { x, raw, y: smooth ? NSML.plots.ema(raw, weight) : raw, smooth };
  },

  /* Raw beneath, smoothed over it; both hover with the raw and the smoothed value. */
  lineTraces(l, { name, color, meta, legend, header, dash, faint }) {
    const P = NSML.plots, custom = l.raw.map((v, i) => [P.num(v), P.num(l.y[i])]);
    const tip = `${header}<br>%{x}: <b>%{customdata[0]}</b>${l.smooth ? " raw · %{customdata[1]} smoothed" : ""}<extra></extra>`;
    const common = { x: l.x, mode: l.x.length === 1 ? "markers" : "lines", marker: { color, size: 6 }, meta, legendgroup: meta, name, customdata: custom,
      hovertemplate: tip, hoverinfo: faint ? "skip" : undefined };
    const rawTrace = { ...common, y: l.raw, line: { color, width: l.smooth ? 1 : 1.6, dash }, opacity: faint ? 0.25 : l.smooth ? 0.4 : 1,
      showlegend: legend && !l.smooth };
    if (faint) rawTrace.hovertemplate = undefined;
    if (!l.smooth) return [rawTrace];
    return [rawTrace, { ...common, y: l.y, line: { color, width: 1.8, dash }, opacity: faint ? 0.25 : 1, showlegend: legend }];
  },

  drawPanel(spec) {
    const div = this.panels.get(spec.id);
    if (!div || div.closest("[hidden]")) return;
    const P = NSML.plots, weight = Number(this.opt("smooth", "0.6")), by = this.opt("group", "");
    const traces = [], drawn = [], csv = [];
    const differing = this.data.args.differing, visible = this.visible();
    const elems = spec.kind === "line" ? [""] : [...spec.elems].sort();
    const keyOf = (elem) => (spec.kind === "line" ? spec.id : `${spec.base}@${spec.kind}:${elem}`);
    const grouped = by && spec.kind === "line";
    const groups = new Map();
    if (grouped) for (const s of visible) { const g = this.groupOf(s, by); if (!groups.has(g)) groups.set(g, []); groups.get(g).push(s); }
    const groupNames = [...groups.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const legendNames = [];
    for (const [si, s] of visible.entries()) {
      const series = this.data.series[s.name] || {};
      const argsText = differing.map((k) => `${k}=${s.params[k] ?? "—"}`).join(" ");
      for (const [ei, elem] of elems.entries()) {
        const key = keyOf(elem), line = series[key];
        if (!line) continue;
        csv.push(...line.x.map((x, i) => [...(grouped ? [this.groupOf(s, by)] : []), s.name, key, x, line.y[i]]));
        const header = `<b>${s.name}</b>${elem ? " · " + elem : ""}${argsText ? "<br>" + argsText : ""}`;
        if (spec.kind === "stack") {
          const color = visible.length === 1 ? P.color(ei) : this.colorOf(s.name);
          const name = visible.length === 1 ? elem : `${s.name} · ${elem}`;
          legendNames.push(name);
          traces.push({ x: line.x.map((v) => this.toX(v)), y: line.y, stackgroup: s.name, mode: "lines", line: { color, width: 0.6 },
            fillcolor: P.alpha(color, visible.length === 1 ? 0.55 : 0.3), name, meta: s.name, legendgroup: `${s.name}:${elem}`,
            customdata: line.y.map((v) => P.num(v)), hovertemplate: `${header}<br>%{x}: <b>%{customdata}</b><extra></extra>` });
          continue;
        }
        const l = this.lineOf(line, weight);
        if (grouped) {
          const gi = groupNames.indexOf(this.groupOf(s, by));
          drawn.push({ group: gi, x: l.x, y: l.y, raw: l.raw });
          traces.push(...this.lineTraces(l, { name: s.name, color: P.color(gi), meta: s.name, legend: false, header, faint: true }));
          continue;
        }
        const vector = spec.kind === "vector";
        const color = vector && visible.length === 1 ? P.color(ei) : this.colorOf(s.name);
        const name = vector ? (visible.length === 1 ? elem : `${s.name} · ${elem}`) : s.name;
        legendNames.push(name);
        const std = series[key + "@std"];
        if (std) traces.push(...P.stdBand(l, { x: std.x.map((v) => this.toX(v)), y: std.y }, color, s.name));
        drawn.push({ x: l.x, y: l.y, raw: l.raw });
        traces.push(...this.lineTraces(l, { name, color, meta: s.name, legend: true, header,
          dash: vector && visible.length > 1 ? ["solid", "dash", "dot", "dashdot", "longdash"][ei % 5] : undefined }));
      }
    }
    if (grouped) traces.push(...this.groupTraces(groupNames, groups, drawn, legendNames));
    else if (this.opt("mean") === "1" && spec.kind === "line") {
      const m = P.meanSd(drawn, this.buckets());
      if (m) {
        const fg = NSML.theme.color("--fg");
        traces.push(...P.band(m.x, m.mean.map((v, i) => v - m.sd[i]), m.mean.map((v, i) => v + m.sd[i]), "#777777", "__mean"));
        traces.push({ x: m.x, y: m.mean, mode: "lines", line: { color: fg, width: 2, dash: "dash" }, meta: "__mean", name: "mean ± sd",
          customdata: m.sd.map((v) => P.num(v)), hovertemplate: "mean ± sd<br>%{x}: %{y:.6~g} ± %{customdata}<extra></extra>" });
        legendNames.push("mean ± sd");
      }
    }
    const range = this.data.xmin !== null && this.data.xmin !== undefined ? [this.toX(this.data.xmin), this.toX(this.data.xmax)] : null;
    const log = this.opt("log") === "1";
    const allY = traces.filter((t) => !t.stackgroup).flatMap((t) => Array.from(t.y));
    const axis = { type: this.data.x === "walltime" ? "date" : "linear", log, range, x: this.XTITLE[this.data.x], y: spec.base,
      yrange: spec.kind === "stack" ? null : P.flatRange(allY, log), zero: spec.kind === "stack",
      legend: P.rowsFor(legendNames, div.clientWidth || 430), revision: `${this.data.x}:${range}:${this.opt("log")}:${by}` };
    const layout = P.layout(spec.base, axis);
    div.style.height = `${layout.height}px`;
    div.nsmlOpacity = traces.map((t) => t.opacity ?? 1);
    div.nsmlCsv = () => [[...(grouped ? [by.replace(/^param:/, "")] : []), "session", "metric", this.data.x, "value"], ...csv];
    Plotly.react(div, traces, layout, P.configFor(spec.base));
    if (!div.dataset.bound) this.bind(div);
  },

  /* One line per group: the mean of its sessions' lines, with a ± sd band where two or more have data. */
  groupTraces(names, groups, drawn, legendNames) {
    const P = NSML.plots, out = [];
    for (const [gi, g] of names.entries()) {
      const m = P.meanSd(drawn.filter((d) => d.group === gi), this.buckets(), 1);
      if (!m) continue;
      const color = P.color(gi), meta = `__group:${g}`, n = groups.get(g).length;
      if (m.sd.some((v) => v !== null)) {
        const lo = m.mean.map((v, i) => (m.sd[i] === null ? null : v - m.sd[i])), hi = m.mean.map((v, i) => (m.sd[i] === null ? null : v + m.sd[i]));
        out.push(...P.band(m.x, lo, hi, color, meta).map((t) => ({ ...t, fillcolor: P.alpha(color, 0.2), legendgroup: meta })));
      }
      const label = `${g} (${n} session${n === 1 ? "" : "s"})`;
      legendNames.push(label);
      out.push({ x: m.x, y: m.mean, mode: m.x.length === 1 ? "markers" : "lines", line: { color, width: 2.2 }, marker: { color, size: 7 },
        name: label, meta, legendgroup: meta, customdata: m.mean.map((v, i) => [P.num(v), P.num(m.sd[i]), m.n[i]]),
        hovertemplate: `<b>${g}</b><br>%{x}: mean <b>%{customdata[0]}</b> ± %{customdata[1]} (n=%{customdata[2]})<extra></extra>` });
    }
    return out;
  },

  bind(div) {
    div.dataset.bound = "1";
    div.on("plotly_hover", (ev) => this.highlight(ev.points[0]?.data.meta));
    div.on("plotly_unhover", () => this.highlight(null));
    div.on("plotly_relayout", (ev) => {
      if (this.syncing) return;
      if (ev["xaxis.autorange"]) this.zoom(null, null);
      else if (ev["xaxis.range[0]"] !== undefined) this.zoom(this.fromX(ev["xaxis.range[0]"]), this.fromX(ev["xaxis.range[1]"]));
      else if (Array.isArray(ev["xaxis.range"])) this.zoom(this.fromX(ev["xaxis.range"][0]), this.fromX(ev["xaxis.range"][1]));
    });
  },

  /* A zoom on one panel zooms them all and fetches finer data for just that range. */
  zoom(xmin, xmax) {
    if (xmin !== null && xmin > xmax) [xmin, xmax] = [xmax, xmin];
    NSML.state.set({ xmin: xmin === null ? null : +xmin.toPrecision(12), xmax: xmax === null ? null : +xmax.toPrecision(12) });
    clearTimeout(this.zoomTimer); // wheel zoom fires many events: ask the server once it settles
    this.zoomTimer = setTimeout(() => this.fetch(), 150);
  },

  /* Hovering a line brings that session forward in every panel and in the arguments table. */
  highlight(name) {
    if (typeof name !== "string" || name.startsWith("__")) name = null;
    if (name === this.highlighted) return;
    this.highlighted = name;
    for (const div of this.panels.values()) {
      if (!div.data || !div.nsmlOpacity) continue;
      const op = div.data.map((t, i) => (!name || t.meta === name || String(t.meta).startsWith("__") ? div.nsmlOpacity[i] : 0.12));
      Plotly.restyle(div, { opacity: op });
    }
    this.argsBox.querySelectorAll("tr[data-session]").forEach((tr) => tr.classList.toggle("hl", tr.dataset.session === name));
  },
};
