/* The Graph view: one panel per metric (grouped by the `/` prefix), several sessions overlaid,
   their arguments split into common and differing ones. Every control writes the URL query.
   Zooming asks the server for finer data in the visible range; running sessions update live. */
"use strict";
NSML.graph = {
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
    const filter = NSML.el("input", { id: "metric-filter", type: "search", placeholder: "Filter metrics", value: this.opt("metric", ""),
      oninput: (e) => { NSML.state.set({ metric: e.target.value }); this.draw(true); } });
    const add = NSML.el("input", { id: "add-session", type: "search", placeholder: "Add session OWNER/DATASET/N", list: "session-options",
      onkeydown: (e) => { if (e.key === "Enter" && e.target.value.trim()) { this.addSession(e.target.value.trim()); e.target.value = ""; } } });
    this.options = NSML.el("datalist", { id: "session-options" });
    add.addEventListener("focus", () => this.suggest(), { once: true });
    const reset = NSML.el("button", { type: "button", class: "small", text: "Reset zoom", onclick: () => this.zoom(null, null) });
    this.bar = NSML.el("div", { class: "controls" },
      NSML.el("label", {}, "x ", x), NSML.el("label", { class: "smooth" }, "smoothing ", smooth, smoothVal),
      check("log-scale", "log", "log y", "Logarithmic y axis"), check("mean-sd", "mean", "mean ± sd", "Mean ± sd across the shown sessions"),
      check("show-raw", "raw", "raw", "Show unsmoothed lines behind the smoothed ones"),
      filter, add, this.options, reset);
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
  draw(rebuild = false) {
    if (!this.data) return;
    const filter = this.opt("metric", "").toLowerCase();
    const keys = this.data.keys.filter((k) => !k.includes("@") && (!filter || k.toLowerCase().includes(filter)));
    const signature = keys.join("|") + "#" + this.data.x;
    if (rebuild || signature !== this.signature) this.layoutPanels(keys);
    this.signature = signature;
    for (const key of keys) this.drawPanel(key);
    const shown = this.data.sessions.length;
    const counts = Object.values(this.data.series).flatMap((m) => Object.values(m));
    const total = counts.reduce((a, c) => a + c.count, 0), sent = counts.reduce((a, c) => a + c.x.length, 0);
    const exact = counts.every((c) => c.exact);
    NSML.clear(this.status).append(`${shown} session${shown === 1 ? "" : "s"} · ${keys.length} metric${keys.length === 1 ? "" : "s"} · `,
      exact ? `${total} point${total === 1 ? "" : "s"}` : `${sent} of ${total} points (min/max per pixel column)`,
      this.data.xmin !== null && this.data.xmin !== undefined ? " · zoomed" : "",
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
      const g = NSML.plots.group(k);
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

  drawPanel(key) {
    const div = this.panels.get(key);
    if (!div || div.closest("[hidden]")) return;
    const P = NSML.plots, weight = Number(this.opt("smooth", "0.6")), raw = this.opt("raw") === "1";
    const traces = [], smoothed = [];
    const differing = this.data.args.differing;
    for (const s of this.visible()) {
      const series = this.data.series[s.name] || {};
      const line = series[key];
      if (!line) continue;
      const color = this.colorOf(s.name);
      const xs = line.x.map((v) => this.toX(v));
      const ys = P.ema(line.y, weight);
      smoothed.push({ x: xs, y: ys });
      const std = series[key + "@std"];
      if (std) traces.push(...P.stdBand({ x: xs, y: ys }, { x: std.x.map((v) => this.toX(v)), y: std.y }, color, s.name));
      if (weight && raw) traces.push({ x: xs, y: line.y, mode: "lines", line: { color, width: 1 }, opacity: 0.25, hoverinfo: "skip", meta: s.name });
      const argsText = differing.map((k) => `${k}=${s.params[k] ?? "—"}`).join(" ");
      traces.push({ x: xs, y: ys, mode: xs.length === 1 ? "markers" : "lines", line: { color, width: 1.6 }, marker: { color, size: 6 }, meta: s.name,
        name: s.name, hovertemplate: `<b>${s.name}</b>${argsText ? "<br>" + argsText : ""}<br>%{x}: %{y:.4g}<extra></extra>` });
    }
    if (this.opt("mean") === "1") {
      const m = P.meanSd(smoothed);
      if (m) {
        const fg = NSML.theme.color("--fg");
        traces.push(...P.band(m.x, m.mean.map((v, i) => v - m.sd[i]), m.mean.map((v, i) => v + m.sd[i]), "#777777", "__mean"));
        traces.push({ x: m.x, y: m.mean, mode: "lines", line: { color: fg, width: 2, dash: "dash" }, meta: "__mean",
          hovertemplate: "mean ± sd<br>%{x}: %{y:.4g}<extra></extra>" });
      }
    }
    const range = this.data.xmin !== null && this.data.xmin !== undefined ? [this.toX(this.data.xmin), this.toX(this.data.xmax)] : null;
    const axis = { type: this.data.x === "walltime" ? "date" : "linear", log: this.opt("log") === "1", range,
      revision: `${this.data.x}:${range}:${this.opt("log")}` };
    Plotly.react(div, traces, P.layout(key, axis), P.config);
    if (!div.dataset.bound) this.bind(div);
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
    if (name === "__mean") name = null;
    if (name === this.highlighted) return;
    this.highlighted = name;
    for (const div of this.panels.values()) {
      if (!div.data) continue;
      const base = (t) => (t.hoverinfo === "skip" && !t.fill && t.line?.width === 1 ? 0.25 : 1); // raw lines stay faint
      const op = div.data.map((t) => (!name || t.meta === name || t.meta === "__mean" ? base(t) : 0.12));
      Plotly.restyle(div, { opacity: op });
    }
    this.argsBox.querySelectorAll("tr[data-session]").forEach((tr) => tr.classList.toggle("hl", tr.dataset.session === name));
  },
};
