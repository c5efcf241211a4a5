/* AutoML's visual analytics (issue 16): the studies list, a study's page and the comparison of
   several studies. Every view draws what one JSON twin answers (nsml/server/api/automl_web.py;
   the list: GET /api/automl?all=true) and every setting lives in the URL, so a reload or a
   shared link shows the same view:
     tab      trials | history | curves | importance | slice | contour | lineage
     sort, order   the trials table's column (number, state, value, param:NAME, metric:KEY) and direction
     sel      selected trials (repeated): their learning curves
     brush    the parallel coordinates' ranges, SPEC~LO~HI as on the runs table (param:NAME or value)
     method   fanova | ped_anova (importance);  cx, cy  the contour's parameters
     t        the lineage playback's frame;  key  the metric series of the learning curves
   Column specs and values reuse runs.js's helpers (NSML.runs.parse/spec/label/value): a trial
   row has params and metrics the way a runs row does. Charts are Plotly SVG traces (scatter,
   bar, contour) and parcoords.js: nothing that needs WebGL or eval. */
"use strict";
NSML.automl = {
  TABS: [["trials", "Trials"], ["history", "History"], ["curves", "Learning curves"], ["importance", "Importance"],
    ["slice", "Slice"], ["contour", "Contour"], ["lineage", "Lineage"]],
  METHODS: [["fanova", "fANOVA"], ["ped_anova", "PED-ANOVA"]],
  page: (name, params = {}) => `/automl/${name}${NSML.query(params)}`,
  api: (name, tail = "") => `/api/web/automl/${name}${tail}`,
  nameFromPath: () => location.pathname.split("/").slice(2, 5).map(decodeURIComponent).join("/"),

  /* A trial as a runs row: NSML.runs.value reads params[k] and metrics[k].last. */
  row(t) {
    return { ...t, id: t.number, name: `trial ${t.number}`,
      metrics: Object.fromEntries(Object.entries(t.last_values || {}).filter(([, v]) => typeof v === "number").map(([k, v]) => [k, { last: v }])) };
  },
  /* The value a trials-table column sorts by: number, state, value, or a runs.js spec. */
  cell(r, spec) {
    if (["number", "value", "state", "parent", "session", "duration"].includes(spec)) return r[spec] ?? null;
    const c = NSML.runs.parse(spec);
    return c ? NSML.runs.value(r, c) : null;
  },
  compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  },
  /* brush=SPEC~LO~HI (repeated) <-> {spec: [[lo, hi]]}, the runs table's format. */
  readBrush() {
    const out = {};
    for (const b of NSML.state.all("brush")) {
      const [spec, lo, hi] = b.split("~");
      if (spec && lo !== undefined && hi !== undefined && !isNaN(+lo) && !isNaN(+hi)) (out[spec] = out[spec] || []).push([+lo, +hi]);
    }
    return out;
  },
  writeBrush(brush) {
    NSML.state.set({ brush: Object.entries(brush).flatMap(([spec, rs]) => rs.map(([lo, hi]) => `${spec}~${+lo.toPrecision(6)}~${+hi.toPrecision(6)}`)) });
  },
  /* The brushed parameter ranges in the parameters' own units, as POST …/rerun takes them:
     10^x on a log10 axis, the choices whose index lies in a categorical axis' brush. */
  ranges(axes, brush) {
    const out = {};
    for (const a of axes) {
      const rs = brush[`param:${a.key}`];
      if (!rs || !rs.length) continue;
      const [lo, hi] = rs[0];
      if (a.cats) out[a.key] = a.choices.filter((_, k) => k >= lo - 1e-9 && k <= hi + 1e-9);
      else out[a.key] = a.log ? [10 ** lo, 10 ** hi] : [lo, hi];
    }
    return out;
  },
  layout(title, x, y, extra = {}) {
    const base = NSML.plots.layout(title, { x, y, legend: extra.legend || 0, revision: title });
    // Trial numbers are whole: a tick per trial while they are few, never a "trial 0.5".
    if (extra.trials !== undefined) extra.xaxis = { ...(extra.xaxis || {}), ...(extra.trials <= 20 ? { dtick: 1 } : { tickformat: "d" }) };
    delete extra.legend; delete extra.trials;
    return { ...base, ...extra, xaxis: { ...base.xaxis, ...(extra.xaxis || {}) }, yaxis: { ...base.yaxis, ...(extra.yaxis || {}) } };
  },
  plot(box, traces, layout, name) {
    if (typeof Plotly === "undefined") { box.append(NSML.el("div", { class: "muted", text: "Plotly did not load." })); return; }
    Plotly.newPlot(box, traces, layout, NSML.plots.configFor(name));
  },
  chart(kind, title) { return NSML.el("div", { class: "automl-chart", dataset: { chart: kind }, title: null, "aria-label": title }); },
  empty: (text) => NSML.el("div", { class: "muted pad small", text }),
  axisTitle: (a) => (a.cats ? a.name : a.log ? `${a.name} (log10)` : a.name),
  ticks: (a) => (a.cats ? { tickvals: a.cats.map((_, i) => i), ticktext: a.cats } : {}),
};

/* -- the studies list (optuna-dashboard's study list) ------------------------------------------ */
NSML.pages.automl = async function (main) {
  const A = NSML.automl, studies = await NSML.api("/api/automl?all=true");
  const picked = new Set(NSML.state.all("s"));
  const compare = NSML.el("a", { class: "button small", dataset: { compare: "" } });
  const update = () => {
    compare.textContent = `Compare ${picked.size}`;
    compare.href = NSML.query({ s: [...picked] }) ? `/automl/compare${NSML.query({ s: [...picked] })}` : "#";
    compare.hidden = picked.size < 2;
    NSML.state.set({ s: [...picked] });
  };
  const head = ["", "study", "status", "algorithm", "trials", "best", "measure", "created", "memo"];
  const tb = NSML.el("tbody");
  for (const s of studies) {
    const counts = `${s.complete} complete · ${s.pruned} pruned · ${s.fail} failed · ${s.running} running${s.max_trials ? ` / ${s.max_trials}` : ""}`;
    tb.append(NSML.el("tr", { dataset: { study: s.name } },
      NSML.el("td", {}, NSML.el("input", { type: "checkbox", title: "Select to compare", checked: picked.has(s.name),
        onchange: (e) => { e.target.checked ? picked.add(s.name) : picked.delete(s.name); update(); } })),
      NSML.el("td", {}, NSML.el("a", { href: A.page(s.name), text: s.name })),
      NSML.el("td", {}, NSML.badge(s.status), s.study_status === "stopping" ? NSML.el("span", { class: "muted small", text: " stopping" }) : null),
      NSML.el("td", { class: "mono small", text: `${s.algorithm}${s.scheduler !== "none" ? ` + ${s.scheduler}` : ""}` }),
      NSML.el("td", { class: "small", text: `${s.trial_count}`, title: counts }),
      NSML.el("td", { class: "mono num", text: s.best_value === null ? "—" : `${NSML.fmt.num(s.best_value)} (#${s.best_trial})` }),
      NSML.el("td", { class: "mono small", text: `${s.measure} ${s.order === "descending" ? "↑" : "↓"}`, title: s.order === "descending" ? "higher is better" : "lower is better" }),
      NSML.el("td", { class: "when", title: NSML.fmt.time(s.created), text: NSML.fmt.ago(s.created) }),
      NSML.el("td", { class: "small memo-cell", text: s.memo || "" })));
  }
  if (!studies.length) tb.append(NSML.el("tr", {}, NSML.el("td", { colspan: head.length, class: "muted", text: "No studies yet: start one with nsml automl run -c CONFIG." })));
  NSML.clear(main).append(NSML.el("div", { class: "page-head" }, NSML.el("h1", { text: "AutoML studies" }),
    NSML.el("div", { class: "controls" }, NSML.el("span", { class: "muted small", text: `${studies.length} stud${studies.length === 1 ? "y" : "ies"} · select two or more to compare` }), compare)),
  NSML.el("table", { class: "grid automl-studies" }, NSML.el("thead", {}, NSML.el("tr", {}, ...head.map((h) => NSML.el("th", { text: h })))), tb));
  update();
};

/* -- a study ----------------------------------------------------------------------------------- */
NSML.pages["automl-study"] = async function (main) {
  const A = NSML.automl, name = A.nameFromPath();
  let d;
  try { d = await NSML.api(A.api(name)); }
  catch (e) { NSML.clear(main).append(NSML.el("div", { class: "pad notice", text: e.message })); return; }
  const view = Object.create(NSML.automl.study);
  view.name = name; view.main = main;
  view.show(d);
  // A running study changes: its data again every few seconds, the current tab redrawn.
  NSML.live.add(NSML.poll(async () => {
    if (!main.isConnected || view.d.study.status !== "running") return view.d.study.status === "running";
    view.d = await NSML.api(A.api(name));
    view.header();
    if (!view.busy()) view.tab(view.current);
    return true;
  }, 5000));
};

NSML.automl.study = {
  busy() { return !!this.main.querySelector(".pc-svg") && this.par && this.par.brushing; },
  show(d) {
    this.d = d;
    this.head = NSML.el("div", { class: "page-head automl-head" });
    this.bar = NSML.el("div");
    this.body = NSML.el("div", { class: "tab-body" });
    NSML.clear(this.main).append(this.head, this.bar, this.body);
    this.header();
    this.tab(NSML.state.get("tab", "trials"));
  },
  header() {
    const s = this.d.study, A = NSML.automl;
    const stop = s.controllable && s.status === "running" && s.study_status === "running" ? NSML.el("button", { type: "button", class: "small", dataset: { action: "stop" },
      text: "Stop tuning", title: "No new trials; the running ones finish (nsml automl stop)", onclick: async (e) => {
        e.target.disabled = true;
        try { await NSML.api(`/api/automl/${this.name}/stop`, { method: "POST" }); NSML.toast(`${this.name} is stopping`); this.d = await NSML.api(A.api(this.name)); this.header(); }
        catch (err) { NSML.toast(err.message, true); e.target.disabled = false; }
      } }) : null;
    const config = NSML.el("details", { class: "automl-config" }, NSML.el("summary", { text: "Config" }),
      NSML.el("pre", { class: "mono small", text: JSON.stringify(s.config, null, 2) }));
    NSML.clear(this.head).append(
      NSML.el("h1", {}, "Study ", NSML.el("a", { href: NSML.urls.session(s.name), text: s.name, title: "Its parent session" }), " ", NSML.badge(s.status),
        s.study_status === "stopping" ? NSML.el("span", { class: "badge", text: "stopping" }) : null),
      NSML.el("div", { class: "meta" },
        NSML.el("span", { class: "mono", text: `${s.algorithm}${s.scheduler !== "none" ? ` + ${s.scheduler}` : ""}` }),
        NSML.el("span", { text: `${s.measure} (${s.order === "descending" ? "higher" : "lower"} is better)` }),
        NSML.el("span", { text: `${s.trial_count} trials${s.max_trials ? ` of ${s.max_trials}` : ""}: ${s.complete} complete, ${s.pruned} pruned, ${s.fail} failed, ${s.running} running` }),
        NSML.el("span", { dataset: { best: "" }, text: s.best_value === null ? "no best yet" : `best ${NSML.fmt.num(s.best_value)} (trial ${s.best_trial})` }),
        NSML.el("span", { class: "muted", text: `population ${s.population} · ${NSML.fmt.duration(s.elapsed)} · ${NSML.fmt.ago(s.created)}` }),
        s.memo ? NSML.el("span", { class: "muted", text: s.memo }) : null, stop),
      ...(s.error ? [NSML.el("div", { class: "error small", text: s.error })] : []), config);
  },
  tab(id) {
    const A = NSML.automl;
    if (!A.TABS.some(([t]) => t === id)) id = "trials";
    this.current = id;
    NSML.state.set({ tab: id === "trials" ? null : id });
    NSML.clear(this.bar).append(NSML.tabs(A.TABS, id, (t) => this.tab(t)));
    NSML.clear(this.body);
    this.par = null;
    this[`draw_${id}`](this.body);
  },
  rows() { return this.d.trials.map(NSML.automl.row); },
  measure() { return this.d.study.measure; },

  /* -- trials: table, parallel coordinates, re-run ---------------------------------------------- */
  draw_trials(box) {
    const A = NSML.automl;
    this.brush = A.readBrush();
    this.tableBox = NSML.el("div", { class: "runs-scroll automl-trials" });
    this.parBox = NSML.el("div", { class: "runs-plot parcoords", dataset: { plot: "parcoords" } });
    this.rerunBox = NSML.el("div", { class: "automl-rerun" });
    box.append(NSML.el("h3", { text: "Parallel coordinates" }),
      NSML.el("p", { class: "muted small", text: "Axes ordered by the strength of their correlation with the measure (|Pearson r|); drag along an axis to keep a range, dotted lines are trials still running." }),
      this.parBox, this.rerunBox, NSML.el("h3", { text: "Trials" }), this.tableBox);
    this.drawPar();
    this.drawTable();
    this.drawRerun();
  },
  parAxes() {
    const d = this.d;
    // The label says the axis' r with the measure (its order); "(log)": the axis is log10 of the value.
    return [...d.axes.map((a) => ({ key: `param:${a.key}`, label: `${a.key}${a.log ? " (log)" : ""}${a.r === null ? "" : ` r=${a.r.toFixed(2)}`}`, cats: a.cats, values: a.values })),
      { key: "value", label: this.measure(), cats: null, values: d.trials.map((t) => t.value) }];
  },
  drawPar() {
    const A = NSML.automl, d = this.d;
    if (!d.trials.length) { NSML.clear(this.parBox).append(A.empty("No trials yet.")); return; }
    const values = d.trials.map((t) => t.value);
    this.par = NSML.parcoords.draw(NSML.clear(this.parBox), {
      axes: this.parAxes(),
      rows: d.trials.map((t) => ({ id: t.number, name: `trial ${t.number} (${t.state})`, dash: t.state === "running" })),
      color: { label: this.measure(), cats: null, values },
      brush: this.brush,
      onBrush: (brush) => { this.brush = structuredClone(brush); A.writeBrush(this.brush); this.applyBrush(); this.drawRerun(); },
      onHover: (id) => this.tableBox.querySelectorAll("tbody tr").forEach((tr) => tr.classList.toggle("pc-hot", id !== null && tr.dataset.trial === String(id))),
    });
  },
  passes(t) {
    const axes = this.parAxes(), i = this.d.trials.indexOf(t);
    return Object.entries(this.brush || {}).every(([key, rs]) => {
      const a = axes.find((x) => x.key === key), v = a ? a.values[i] : null;
      return !a || (v !== null && rs.some(([lo, hi]) => v >= lo && v <= hi));
    });
  },
  applyBrush() {
    this.tableBox.querySelectorAll("tbody tr[data-trial]").forEach((tr) => {
      const t = this.d.trials.find((x) => String(x.number) === tr.dataset.trial);
      tr.classList.toggle("brushed-out", !!t && !this.passes(t));
    });
  },
  columns() {
    const keys = [...new Set(this.d.trials.flatMap((t) => Object.keys(t.last_values || {})))].filter((k) => !k.includes("@") && k !== this.measure()).sort();
    return [{ spec: "number", label: "#" }, { spec: "state", label: "state" }, { spec: "session", label: "session" },
      { spec: "value", label: this.measure() },
      ...Object.keys(this.d.study.config.h_params || {}).map((k) => ({ spec: `param:${k}`, label: k })),
      ...keys.map((k) => ({ spec: `metric:${k}:last`, label: k })), { spec: "parent", label: "parent" }, { spec: "duration", label: "ran" }];
  },
  drawTable() {
    const A = NSML.automl, sort = NSML.state.get("sort", "number"), desc = NSML.state.get("order") === "desc";
    const sel = new Set(NSML.state.all("sel"));
    const cols = this.columns();
    const rows = this.rows().map((r) => ({ ...r, duration: r.started ? (r.ended || this.d.now) - r.started : null }));
    rows.sort((a, b) => { const c = A.compare(A.cell(a, sort), A.cell(b, sort)); return desc ? -c : c; });
    const th = cols.map((c) => NSML.el("th", { class: "sortable" + (c.spec === sort ? (desc ? " desc" : " asc") : "") + (c.spec.startsWith("param:") ? " param-col" : c.spec.startsWith("metric:") ? " metric-col" : ""),
      dataset: { col: c.spec }, title: "Click to sort", text: c.label, onclick: () => {
        const order = c.spec === sort ? (desc ? "asc" : "desc") : c.spec === "number" || c.spec === "state" ? "asc" : (c.spec === "value" && this.d.study.order === "ascending" ? "asc" : "desc");
        NSML.state.set({ sort: c.spec === "number" ? null : c.spec, order: order === "asc" ? null : order });
        this.drawTable();
      } }));
    const tb = NSML.el("tbody");
    const best = this.d.study.best_trial;
    for (const r of rows) {
      const td = (c) => {
        if (c.spec === "session") return NSML.el("td", {}, r.session ? NSML.el("a", { href: NSML.urls.session(r.session), text: r.session }) : NSML.el("span", { class: "muted", text: "—" }));
        if (c.spec === "state") return NSML.el("td", {}, NSML.el("span", { class: `badge trial-${r.state}`, text: r.state }));
        if (c.spec === "duration") return NSML.el("td", { class: "small", text: r.duration === null ? "" : NSML.fmt.duration(r.duration) });
        const v = A.cell(r, c.spec);
        return NSML.el("td", { class: "mono num" + (v === null ? " none" : ""), text: v === null ? "—" : typeof v === "number" ? NSML.fmt.num(v) : String(v) });
      };
      tb.append(NSML.el("tr", { dataset: { trial: String(r.number) }, class: (r.number === best ? "best " : "") + (sel.has(String(r.number)) ? "picked" : "") },
        NSML.el("td", {}, NSML.el("input", { type: "checkbox", title: "Select for the learning curves", checked: sel.has(String(r.number)), onchange: (e) => {
          const now = new Set(NSML.state.all("sel"));
          e.target.checked ? now.add(String(r.number)) : now.delete(String(r.number));
          NSML.state.set({ sel: [...now].sort((a, b) => a - b) });
          e.target.closest("tr").classList.toggle("picked", e.target.checked);
        } })), ...cols.map((c) => { const cell = td(c); cell.dataset.col = c.spec; return cell; })));
    }
    if (!rows.length) tb.append(NSML.el("tr", {}, NSML.el("td", { colspan: cols.length + 1, class: "muted", text: "No trials yet." })));
    NSML.clear(this.tableBox).append(NSML.el("table", { class: "grid automl-table" },
      NSML.el("thead", {}, NSML.el("tr", {}, NSML.el("th", { title: "Selected trials are drawn on the Learning curves tab", text: "" }), ...th)), tb));
    this.applyBrush();
  },
  /* "Re-run with this space": the brushed ranges as a new config, shown, downloadable, started in one click. */
  async drawRerun() {
    const A = NSML.automl, box = this.rerunBox, ranges = A.ranges(this.d.axes, this.brush || {});
    const names = Object.keys(ranges);
    NSML.clear(box);
    const summary = names.length ? names.map((k) => {
      const v = ranges[k], a = this.d.axes.find((x) => x.key === k);
      return a.cats ? `${k} ∈ {${v.join(", ")}}` : `${k} ∈ [${NSML.fmt.num(v[0])}, ${NSML.fmt.num(v[1])}]`;
    }).join(" · ") : "Brush one or more parameter axes to narrow the space, then start a new study over it.";
    const pre = NSML.el("pre", { class: "mono small automl-rerun-config", hidden: true });
    const out = NSML.el("span", { class: "small", dataset: { rerunResult: "" } });
    const body = () => JSON.stringify({ ranges });
    const post = (tail) => NSML.api(A.api(this.name, tail), { method: "POST", headers: { "Content-Type": "application/json" }, body: body() });
    const show = NSML.el("button", { type: "button", class: "small", text: "Show config", disabled: !names.length, onclick: async () => {
      try { pre.textContent = JSON.stringify((await post("/rerun/config")).config, null, 2); pre.hidden = false; } catch (e) { NSML.toast(e.message, true); }
    } });
    const download = NSML.el("button", { type: "button", class: "small", text: "Download config", disabled: !names.length, onclick: async () => {
      try { NSML.plots.save(`${NSML.plots.slug(this.name)}-narrowed.json`, JSON.stringify((await post("/rerun/config")).config, null, 2) + "\n", "application/json"); }
      catch (e) { NSML.toast(e.message, true); }
    } });
    const start = NSML.el("button", { type: "button", class: "small primary", dataset: { action: "rerun" }, text: "Re-run with this space",
      disabled: !names.length || !this.d.study.controllable, title: this.d.study.controllable ? "Start a new study over the brushed ranges, with this study's code" : "Only the study's owner can re-run it",
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          const s = await post("/rerun");
          NSML.clear(out).append("Started ", NSML.el("a", { href: A.page(s.name), text: s.name, dataset: { newStudy: s.name } }));
          NSML.toast(`Started ${s.name}`);
        } catch (err) { NSML.toast(err.message, true); NSML.clear(out).append(NSML.el("span", { class: "error", text: err.message })); }
        e.target.disabled = false;
      } });
    box.append(NSML.el("div", { class: "controls" }, NSML.el("strong", { text: "Re-run with this space" }),
      NSML.el("span", { class: "small" + (names.length ? " mono" : " muted"), dataset: { ranges: "" }, text: summary }), show, download, start, out), pre);
  },

  /* -- history: best so far, EDF, timeline ------------------------------------------------------ */
  draw_history(box) {
    const A = NSML.automl, d = this.d, h = d.history;
    const best = A.chart("history", "Best so far"), edf = A.chart("edf", "EDF"), tl = A.chart("timeline", "Timeline");
    box.append(NSML.el("div", { class: "automl-grid" }, best, edf), tl);
    if (!h.length) { best.append(A.empty("No trials yet.")); return; }
    const colour = NSML.theme.color("--accent");
    A.plot(best, [
      { type: "scatter", mode: "markers", name: "trial", x: h.filter((p) => p.value !== null).map((p) => p.number), y: h.filter((p) => p.value !== null).map((p) => p.value),
        marker: { size: 7, color: colour }, hovertemplate: "trial %{x}<br>%{y}<extra></extra>" },
      { type: "scatter", mode: "lines", name: "best so far", x: h.filter((p) => p.best !== null).map((p) => p.number), y: h.filter((p) => p.best !== null).map((p) => p.best),
        line: { shape: "hv", width: 2, color: NSML.plots.color(1) } }],
    A.layout("History: each trial's value and the best so far", "trial", this.measure(), { legend: 1, trials: h.length }), "history");
    if (d.edf.length) A.plot(edf, [{ type: "scatter", mode: "lines", x: d.edf.map((e) => e.value), y: d.edf.map((e) => e.fraction), line: { shape: "hv", width: 2 }, name: "EDF" }],
      A.layout("Empirical distribution of the values", this.measure(), "fraction of trials ≤"), "edf");
    else edf.append(A.empty("No complete trial yet."));
    if (!d.timeline.length) { tl.append(A.empty("No trial session has started yet.")); return; }
    const t0 = Math.min(...d.timeline.map((t) => t.start));
    const stateColour = { complete: NSML.plots.color(2), pruned: NSML.plots.color(1), fail: NSML.plots.color(3), running: NSML.plots.color(0) };
    const states = [...new Set(d.timeline.map((t) => t.state))];
    A.plot(tl, states.map((s) => {
      const ts = d.timeline.filter((t) => t.state === s);
      return { type: "bar", orientation: "h", name: s, y: ts.map((t) => `#${t.number}`), base: ts.map((t) => t.start - t0), x: ts.map((t) => Math.max(0.05, t.end - t.start)),
        marker: { color: stateColour[s] || NSML.plots.color(4) }, text: ts.map((t) => t.session), hovertemplate: "%{y} %{text}<br>from %{base:.1f}s for %{x:.1f}s<extra></extra>" };
    }), A.layout("Timeline: when each trial's session ran", "seconds since the first start", "trial", { legend: 1, barmode: "overlay", yaxis: { autorange: "reversed", type: "category" } }), "timeline");
  },

  /* -- learning curves: the measure at each compare step, and the sessions' own series -------- */
  async draw_curves(box) {
    const A = NSML.automl, d = this.d, sel = new Set(NSML.state.all("sel").map(Number));
    const chosen = d.trials.filter((t) => !sel.size || sel.has(t.number));
    const inter = A.chart("intermediate", "Intermediate values"), series = A.chart("series", "Metric series");
    const keyPick = NSML.el("input", { class: "small mono", value: NSML.state.get("key", this.measure()), size: 18, title: "The metric series to draw (Enter)",
      onkeydown: (e) => { if (e.key === "Enter") { NSML.state.set({ key: e.target.value.trim() === this.measure() ? null : e.target.value.trim() }); this.tab("curves"); } } });
    box.append(NSML.el("p", { class: "muted small", text: sel.size ? `Trials ${[...sel].join(", ")} (selected on the Trials tab).` : "Every trial; select some on the Trials tab to draw only those." }),
      NSML.el("div", { class: "automl-grid" }, inter, NSML.el("div", {}, NSML.el("div", { class: "controls small" }, "series ", keyPick), series)));
    const withSteps = d.intermediate.filter((i) => !sel.size || sel.has(i.number));
    if (withSteps.length) A.plot(inter, withSteps.map((i) => ({ type: "scatter", mode: "lines+markers", name: `#${i.number}`, x: i.steps, y: i.values,
      line: { dash: i.state === "running" ? "dot" : "solid", color: NSML.plots.color(i.number) } })),
    A.layout(`Intermediate values: ${this.measure()} at each compare step`, "compare step", this.measure(), { legend: NSML.plots.rowsFor(withSteps.map((i) => `#${i.number}`), 500) }), "intermediate");
    else inter.append(A.empty("No compare steps recorded (the config's step compares trials during training)."));
    const names = chosen.filter((t) => t.session).map((t) => t.session);
    if (!names.length) { series.append(A.empty("No trial session to read.")); return; }
    const key = NSML.state.get("key", this.measure());
    try {
      const g = await NSML.api(`/api/web/graph${NSML.query({ s: names, key: [key], buckets: 500 })}`);
      const byName = Object.fromEntries(chosen.map((t) => [t.session, t]));
      const traces = Object.entries(g.series).filter(([, ks]) => ks[key]).map(([n, ks]) => ({ type: "scatter", mode: "lines", name: `#${byName[n].number}`,
        x: ks[key].x, y: ks[key].y, line: { color: NSML.plots.color(byName[n].number), dash: byName[n].state === "running" ? "dot" : "solid" } }));
      if (!traces.length) { series.append(A.empty(`No trial reported ${key}.`)); return; }
      A.plot(series, traces, A.layout(`${key} of each trial's session`, "step", key, { legend: NSML.plots.rowsFor(traces.map((t) => t.name), 500) }), `${key}-series`);
    } catch (e) { series.append(A.empty(e.message)); }
  },

  /* -- importance: Optuna's fANOVA / PED-ANOVA ------------------------------------------------ */
  async draw_importance(box) {
    const A = NSML.automl, method = NSML.state.get("method", "fanova");
    const chart = A.chart("importance", "Importance"), note = NSML.el("p", { class: "muted small" });
    const pick = NSML.el("select", { class: "small", dataset: { method: "" }, onchange: (e) => { NSML.state.set({ method: e.target.value === "fanova" ? null : e.target.value }); this.tab("importance"); } },
      ...A.METHODS.map(([v, l]) => NSML.el("option", { value: v, text: l, selected: v === method })));
    box.append(NSML.el("div", { class: "controls small" }, "evaluator ", pick, NSML.el("span", { class: "muted", text: "Optuna's evaluators over the complete trials" })), chart, note);
    try {
      const got = await NSML.api(A.api(this.name, `/importance${NSML.query({ method })}`));
      A.importanceChart(chart, note, got);
    } catch (e) { chart.append(A.empty(e.message)); }
  },

  /* -- slice: the measure against each parameter ------------------------------------------------ */
  draw_slice(box) {
    const A = NSML.automl, charts = this.d.slices.map((s) => { const c = A.chart("slice", `Slice ${s.name}`); c.dataset.param = s.name; return c; });
    // Every box in the grid before the first is drawn: Plotly takes a box's width when it draws.
    box.append(NSML.el("div", { class: "automl-grid" }, ...charts));
    for (const [i, s] of this.d.slices.entries()) {
      const c = charts[i];
      if (!s.x.length) { c.append(A.empty(`No complete trial has ${s.name}.`)); continue; }
      A.plot(c, [{ type: "scatter", mode: "markers", x: s.x, y: s.y, text: s.numbers.map((n) => `trial ${n}`),
        marker: { size: 8, color: s.numbers, colorscale: "Viridis", showscale: true, colorbar: { title: { text: "trial", side: "right" }, thickness: 8 } },
        hovertemplate: "%{text}<br>%{x}<br>%{y}<extra></extra>" }],
      A.layout(`Slice: ${this.measure()} by ${s.name}`, s.name, this.measure(), { xaxis: s.cats ? { type: "category", categoryarray: s.cats } : { type: s.log ? "log" : "linear" } }), `slice-${s.name}`);
    }
  },

  /* -- contour: two parameters against the measure ---------------------------------------------- */
  async draw_contour(box) {
    const A = NSML.automl, names = this.d.axes.map((a) => a.key);
    if (names.length < 2) { box.append(A.empty("A contour needs two parameters; this study has one.")); return; }
    const cx = names.includes(NSML.state.get("cx")) ? NSML.state.get("cx") : names[0];
    const cy = names.includes(NSML.state.get("cy")) && NSML.state.get("cy") !== cx ? NSML.state.get("cy") : names.find((n) => n !== cx);
    const sel = (k, v) => NSML.el("select", { class: "small", dataset: { axis: k }, onchange: (e) => { NSML.state.set({ [k]: e.target.value }); this.tab("contour"); } },
      ...names.map((n) => NSML.el("option", { value: n, text: n, selected: n === v })));
    const chart = A.chart("contour", "Contour");
    box.append(NSML.el("div", { class: "controls small" }, "x ", sel("cx", cx), " y ", sel("cy", cy)), chart);
    try {
      const c = await NSML.api(A.api(this.name, `/contour${NSML.query({ x: cx, y: cy })}`));
      const traces = [];
      if (c.grid) traces.push({ type: "contour", x: c.grid.x, y: c.grid.y, z: c.grid.z, colorscale: "Viridis", reversescale: this.d.study.order === "ascending",
        contours: { coloring: "heatmap" }, colorbar: { title: { text: this.measure(), side: "right" }, thickness: 10 }, hoverinfo: "skip", name: "" });
      traces.push({ type: "scatter", mode: "markers", x: c.points.map((p) => p.x), y: c.points.map((p) => p.y), text: c.points.map((p) => `trial ${p.number}: ${NSML.fmt.num(p.value)}`),
        marker: { size: 8, color: "#fff", line: { width: 1.5, color: "#000" } }, hovertemplate: "%{text}<extra></extra>", name: "trials" });
      A.plot(chart, traces, A.layout(`Contour: ${this.measure()} over ${cx} and ${cy}`, A.axisTitle(c.x), A.axisTitle(c.y), { height: 420, xaxis: A.ticks(c.x), yaxis: A.ticks(c.y) }), "contour");
      if (!c.grid) chart.append(A.empty("Fewer than 3 distinct complete trials: points only."));
    } catch (e) { chart.append(A.empty(e.message)); }
  },

  /* -- lineage: the trials as a tree by their parent (PBT), with playback over time ---------------- */
  draw_lineage(box) {
    const A = NSML.automl, L = this.d.lineage, S = NSML.parcoords.svg;
    if (!L.nodes.length) { box.append(A.empty("No trials yet.")); return; }
    const frames = L.frames, last = frames.length - 1;
    let at = Math.min(last, Math.max(0, Number(NSML.state.get("t", last)) || 0));
    if (NSML.state.get("t") === null) at = last;
    const W = Math.max(600, box.clientWidth || 900), lanes = Math.max(...L.nodes.map((n) => n.lane)) + 1, H = 40 + lanes * 26;
    const t0 = frames[0], t1 = Math.max(frames[last], t0 + 1e-6);
    const x = (t) => 60 + ((t - t0) / (t1 - t0)) * (W - 190), y = (lane) => 24 + lane * 26;
    const values = L.nodes.map((n) => n.value).filter((v) => v !== null), lo = Math.min(...values), hi = Math.max(...values);
    const byNum = Object.fromEntries(L.nodes.map((n) => [n.number, n]));
    const svg = S("svg", { class: "lineage-svg", width: W, height: H, role: "img", "aria-label": `Lineage of ${L.nodes.length} trials` });
    const label = NSML.el("span", { class: "small mono", dataset: { frame: "" } });
    const draw = () => {
      NSML.clear(svg);
      const now = frames[at];
      for (const e of L.edges) {
        const a = byNum[e.from], b = byNum[e.to];
        if (b.start > now) continue;
        svg.append(S("path", { class: "lineage-edge", d: `M${x(a.start)},${y(a.lane)} C${x(b.start) - 20},${y(a.lane)} ${x(b.start) - 20},${y(b.lane)} ${x(b.start)},${y(b.lane)}` }));
      }
      for (const n of L.nodes) {
        if (n.start > now) continue;
        const done = n.end !== null && n.end <= now, end = done ? n.end : now;
        const colour = done && n.value !== null ? NSML.parcoords.color(hi > lo ? (n.value - lo) / (hi - lo) : 0.5) : "var(--muted)";
        const g = S("g", { class: "lineage-node", "data-trial": String(n.number) },
          S("line", { class: "lineage-life" + (done ? "" : " running"), x1: x(n.start), x2: Math.max(x(n.start) + 2, x(end)), y1: y(n.lane), y2: y(n.lane) }),
          S("circle", { cx: x(n.start), cy: y(n.lane), r: 6, fill: colour }),
          S("text", { x: Math.max(x(n.start) + 10, x(end) + 6), y: y(n.lane), "dominant-baseline": "central", class: "lineage-label" },
            `#${n.number}${done && n.value !== null ? ` ${NSML.fmt.num(n.value)}` : done ? ` ${n.state}` : " running"}`));
        g.append(S("title", {}, `trial ${n.number} · ${n.state}${n.parent !== null ? ` · forked from ${n.parent}` : ""} · ${NSML.fmt.summary(n.params)}`));
        svg.append(g);
      }
      label.textContent = `${NSML.fmt.duration(now - t0)} after the first trial · ${L.nodes.filter((n) => n.start <= now).length} of ${L.nodes.length} trials`;
    };
    let timer = null;
    const slider = NSML.el("input", { type: "range", min: 0, max: last, value: at, class: "lineage-slider", dataset: { playback: "" },
      oninput: (e) => { at = +e.target.value; NSML.state.set({ t: at === last ? null : at }); draw(); } });
    const play = NSML.el("button", { type: "button", class: "small", text: "▶ Play", onclick: () => {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "▶ Play"; return; }
      if (at >= last) at = 0;
      play.textContent = "❚❚ Pause";
      timer = setInterval(() => {
        if (!svg.isConnected || at >= last) { clearInterval(timer); timer = null; play.textContent = "▶ Play"; return; }
        at += 1; slider.value = at; NSML.state.set({ t: at === last ? null : at }); draw();
      }, 400);
    } });
    box.append(NSML.el("p", { class: "muted small", text: L.forked ? "Each trial starts where it was created; a curve links a forked trial to the trial whose checkpoint it took (PBT)."
      : "No trial was forked from another (forks come from the pbt scheduler): each is a root. Colour: its final value." }),
    NSML.el("div", { class: "controls small" }, play, slider, label), NSML.el("div", { class: "lineage-box" }, svg));
    draw();
  },
};

/* A horizontal bar per parameter, largest on top (the importance twin's answer). */
NSML.automl.importanceChart = function (chart, note, got) {
  const A = NSML.automl;
  note.textContent = `${got.label} over ${got.trials} complete trial${got.trials === 1 ? "" : "s"}. ${got.note || ""}`;
  if (!got.importances.length) { chart.append(A.empty(got.note || "No importances.")); return; }
  const rows = [...got.importances].reverse();
  A.plot(chart, [{ type: "bar", orientation: "h", x: rows.map((r) => r.importance), y: rows.map((r) => r.name), text: rows.map((r) => r.importance.toFixed(3)),
    textposition: "auto", marker: { color: NSML.theme.color("--accent") }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>" }],
  A.layout(`Hyperparameter importance (${got.label})`, "importance (sums to 1)", "", { height: 120 + 28 * rows.length, yaxis: { type: "category" } }), `importance-${got.method}`);
  chart.dataset.params = got.importances.map((r) => r.name).join(",");
};

/* -- several studies: overlays coloured by study, and their trials merged for importance --------- */
NSML.pages["automl-compare"] = async function (main) {
  const A = NSML.automl, names = [...new Set(NSML.state.all("s"))];
  NSML.clear(main).append(NSML.el("h1", { text: "Compare studies" }));
  if (!names.length) { main.append(A.empty("Pick studies to compare on the AutoML page (s=OWNER/DATASET/N in the address, repeated).")); return; }
  let d;
  try { d = await NSML.api(`/api/web/automl/compare${NSML.query({ s: names })}`); }
  catch (e) { main.append(NSML.el("div", { class: "pad notice", text: e.message })); return; }
  const colour = (i) => NSML.plots.color(i);
  const tb = NSML.el("tbody", {}, ...d.studies.map((s, i) => NSML.el("tr", { dataset: { study: s.study.name } },
    NSML.el("td", {}, NSML.el("span", { class: "swatch", style: `background:${colour(i)}` }), NSML.el("a", { href: A.page(s.study.name), text: s.study.name })),
    NSML.el("td", {}, NSML.badge(s.study.status)), NSML.el("td", { class: "mono small", text: `${s.study.algorithm}${s.study.scheduler !== "none" ? ` + ${s.study.scheduler}` : ""}` }),
    NSML.el("td", { text: String(s.study.trial_count) }), NSML.el("td", { class: "mono", text: s.study.best_value === null ? "—" : NSML.fmt.num(s.study.best_value) }),
    NSML.el("td", { class: "mono small", text: s.study.measure }), NSML.el("td", { class: "small", text: s.study.memo || "" }))));
  main.append(NSML.el("table", { class: "grid automl-studies" }, NSML.el("thead", {}, NSML.el("tr", {}, ...["study", "status", "algorithm", "trials", "best", "measure", "memo"].map((h) => NSML.el("th", { text: h })))), tb));
  const best = A.chart("history", "Best so far"), values = A.chart("values", "Values"), edf = A.chart("edf", "EDF");
  const par = NSML.el("div", { class: "runs-plot parcoords", dataset: { plot: "parcoords" } });
  main.append(NSML.el("div", { class: "automl-grid" }, best, values), NSML.el("div", { class: "automl-grid" }, edf, NSML.el("div")),
    NSML.el("h3", { text: "Parameters of every study's trials, coloured by study" }), par);
  A.plot(best, d.studies.map((s, i) => ({ type: "scatter", mode: "lines", name: s.study.name, line: { shape: "hv", width: 2, color: colour(i) },
    x: s.history.filter((h) => h.best !== null).map((h) => h.number), y: s.history.filter((h) => h.best !== null).map((h) => h.best) })),
  A.layout("Best so far", "trial", d.studies[0].study.measure, { legend: d.studies.length, trials: Math.max(...d.studies.map((s) => s.history.length)) }), "compare-history");
  A.plot(values, d.studies.map((s, i) => ({ type: "scatter", mode: "markers", name: s.study.name, marker: { color: colour(i), size: 7 },
    x: s.history.filter((h) => h.value !== null).map((h) => h.number), y: s.history.filter((h) => h.value !== null).map((h) => h.value) })),
  A.layout("Each trial's value: how consistently each found good scores", "trial", d.studies[0].study.measure, { legend: d.studies.length, trials: Math.max(...d.studies.map((s) => s.history.length)) }), "compare-values");
  A.plot(edf, d.studies.map((s, i) => ({ type: "scatter", mode: "lines", name: s.study.name, line: { shape: "hv", color: colour(i) }, x: s.edf.map((e) => e.value), y: s.edf.map((e) => e.fraction) })),
    A.layout("EDF of the values", d.studies[0].study.measure, "fraction ≤", { legend: d.studies.length }), "compare-edf");
  // One row per trial of any study; a categorical axis takes the union of the studies' choices.
  const all = d.studies.flatMap((s, i) => s.trials.map((t, k) => ({ s, i, t, k })));
  const axes = d.params.map((p) => {
    const cats = d.studies.some((s) => s.axes[p] && s.axes[p].cats) ? [...new Set(d.studies.flatMap((s) => (s.axes[p] && s.axes[p].cats) || []))] : null;
    const log = d.studies.every((s) => s.axes[p] && s.axes[p].log);
    return { key: `param:${p}`, label: log ? `${p} (log10)` : p, cats, values: all.map(({ s, t, k }) => {
      const a = s.axes[p];
      if (!a) return null;
      if (cats) return a.values[k] === null ? null : cats.indexOf(a.cats[a.values[k]]);
      return a.values[k];
    }) };
  });
  axes.push({ key: "value", label: d.studies[0].study.measure, cats: null, values: all.map(({ t }) => t.value) });
  // Each study's lines in its colour of the table and the charts above (the swatches say which).
  if (all.length) NSML.parcoords.draw(par, { axes, rows: all.map(({ s, t, i }, r) => ({ id: r, name: `${s.study.name} trial ${t.number}`, dash: t.state === "running", stroke: colour(i) })),
    color: null, brush: A.readBrush(), onBrush: (b) => A.writeBrush(b) });
  else par.append(A.empty("No trials yet."));
  // Merge: the trials of all these studies as one set, for importance.
  const method = NSML.state.get("method", "fanova"), chart = A.chart("importance", "Merged importance"), note = NSML.el("p", { class: "muted small" });
  const merged = NSML.state.get("merge") === "1";
  const mergeBtn = NSML.el("button", { type: "button", class: "small" + (merged ? " on" : ""), dataset: { action: "merge" }, text: "Merge the trials for importance", disabled: !d.mergeable,
    title: d.mergeable ? "Take the trials of these studies as one set (two searches of one task)" : d.why_not,
    onclick: () => { NSML.state.set({ merge: !merged }); NSML.pages["automl-compare"](main); } });
  const pick = NSML.el("select", { class: "small", onchange: (e) => { NSML.state.set({ method: e.target.value === "fanova" ? null : e.target.value }); NSML.pages["automl-compare"](main); } },
    ...A.METHODS.map(([v, l]) => NSML.el("option", { value: v, text: l, selected: v === method })));
  main.append(NSML.el("h3", { text: "Importance" }), NSML.el("div", { class: "controls small" }, mergeBtn, "evaluator ", pick,
    d.mergeable ? null : NSML.el("span", { class: "muted", text: d.why_not })), chart, note);
  if (merged && d.mergeable) {
    try { A.importanceChart(chart, note, await NSML.api(`/api/web/automl/compare/importance${NSML.query({ s: names, method })}`)); }
    catch (e) { chart.append(A.empty(e.message)); }
  }
};
