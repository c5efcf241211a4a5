/* The runs table (issue 14): sessions as rows, a column per parameter and per metric summary
   (last/min/max), sorted and paged by the server (GET /api/runs), searched with the query
   language, with kind, lineage, tags and memo; parallel coordinates and a scatter over the rows
   shown, whose brushing filters the table; CSV of the rows shown. Every setting is in the URL
   (names prefixed by `ns`, so the compare page's own `sort` is left alone). */
"use strict";
NSML.runs = {
  PAGE: 50,
  KIND: { normal: "train", fork: "fork", submit: "submit", submit_test: "submit", infer: "infer" },
  RESERVED: new Set(["mode", "pause", "iteration"]), // the platform's own arguments: never a default column
  WIDTH: { pick: 30, name: 170, status: 96, created: 82, kind: 64, lineage: 260, param: 96, metric: 108, tags: 170, memo: 220 },

  /* "param:lr", "metric:val/acc:max" <-> {kind, key, agg}; the spec is also /api/runs' sort. */
  parse(spec) {
    if (spec.startsWith("param:")) return { kind: "param", key: spec.slice(6) };
    if (spec.startsWith("metric:")) {
      const rest = spec.slice(7), i = rest.lastIndexOf(":");
      const agg = i > 0 ? rest.slice(i + 1) : "";
      return ["last", "min", "max"].includes(agg) ? { kind: "metric", key: rest.slice(0, i), agg } : { kind: "metric", key: rest, agg: "last" };
    }
    return null;
  },
  spec: (c) => (c.kind === "param" ? `param:${c.key}` : `metric:${c.key}:${c.agg}`),
  label: (c) => (c.kind === "param" ? c.key : `${c.key}${c.agg === "last" ? "" : ` (${c.agg})`}`),
  value: (row, c) => (c.kind === "param" ? row.params[c.key] : (row.metrics[c.key] || {})[c.agg]) ?? null,
  quote: (v) => JSON.stringify(String(v)),

  /* box: where it goes; opt: {ns: state prefix, base(): query terms every row must meet,
     filtered(): whether the page's own filters narrow the rows, toolbar: nodes to add}. */
  mount(box, opt = {}) {
    const t = Object.create(NSML.runs.table);
    t.box = box; t.ns = opt.ns || ""; t.base = opt.base || (() => []); t.filtered = opt.filtered || (() => false);
    t.extra = opt.toolbar || []; t.brush = {}; t.picked = null;
    box.classList.add("runs");
    t.build();
    t.refresh();
    return t;
  },
};

NSML.runs.table = {
  st(k, d = null) { return NSML.state.get(this.ns + k, d); },
  stAll(k) { return NSML.state.all(this.ns + k); },
  set(changes) { NSML.state.set(Object.fromEntries(Object.entries(changes).map(([k, v]) => [this.ns + k, v]))); },
  fullQuery() {
    const q = this.st("q", "").trim();
    return [...this.base(), q ? `(${q})` : null].filter(Boolean).join(" and ");
  },

  build() {
    const R = NSML.runs;
    this.qInput = NSML.el("input", { type: "search", class: "runs-q mono", value: this.st("q", ""), autocomplete: "off", spellcheck: "false",
      placeholder: "Query: lr < 0.01 and val/acc >= 0.95, status:running, tag:baseline, memo ~ wide",
      onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); this.set({ q: this.qInput.value.trim(), offset: null }); this.refresh(); } } });
    this.qError = NSML.el("pre", { class: "query-error", hidden: true, role: "alert" });
    this.count = NSML.el("span", { class: "muted runs-count" });
    this.picker = NSML.el("div", { class: "col-picker", hidden: true });
    const toggle = (k, label, title) => NSML.el("button", { type: "button", class: "small" + (this.st(k) === "1" ? " on" : ""), text: label, title, dataset: { toggle: k },
      onclick: (e) => { const on = this.st(k) !== "1"; this.set({ [k]: on }); e.target.classList.toggle("on", on); this.plots(); } });
    this.brushNote = NSML.el("span", { class: "brush-note small", hidden: true });
    this.toolbar = NSML.el("div", { class: "controls runs-bar" },
      NSML.el("button", { type: "button", class: "small cols-button", text: "Columns", title: "Pick the parameter and metric columns",
        onclick: () => { this.picker.hidden = !this.picker.hidden; if (!this.picker.hidden) this.fillPicker(); } }),
      toggle("par", "Parallel coordinates", "Parameters and metrics of the rows shown, one axis each; drag along an axis to filter the table"),
      toggle("scatter", "Scatter", "Any two columns against each other; select points to filter the table"),
      NSML.el("button", { type: "button", class: "small csv-button", text: "CSV", title: "Download the rows shown as CSV", onclick: () => this.csv() }),
      this.brushNote, ...this.extra, this.count);
    this.plotBox = NSML.el("div", { class: "runs-plots" });
    this.wrap = NSML.el("div", { class: "runs-scroll",
      onmouseover: (e) => { const tr = e.target.closest("tbody tr[data-id]"); if (this.par) this.par.highlight(tr ? tr.dataset.id : null); },
      onmouseleave: () => this.par && this.par.highlight(null) });
    this.pager = NSML.el("div", { class: "controls pager" });
    NSML.clear(this.box).append(NSML.el("div", { class: "runs-search" }, this.qInput, this.qError), this.toolbar, this.picker, this.plotBox, this.wrap, this.pager);
    const widths = JSON.parse(localStorage.getItem("nsml-runs-widths") || "{}");
    this.widths = widths;
    R.current = this;
  },

  /* The keys present (the picker's list and the default columns), per query. */
  async keys(q) {
    if (this._keys && this._keys.q === q) return this._keys;
    this._keys = await NSML.api(`/api/runs/keys${NSML.query({ q })}`);
    return this._keys;
  },

  columns(keys) {
    const R = NSML.runs, chosen = this.stAll("col");
    if (chosen.length) return chosen.map(R.parse).filter(Boolean);
    // Defaults: the parameters whose values differ (else the first few), the summary metrics
    // of the newest sessions (else the most common metrics), their last values.
    const ps = keys.params.filter((k) => !R.RESERVED.has(k.key));
    const differing = ps.filter((k) => k.values > 1);
    const params = (differing.length ? differing : ps).slice(0, 8).map((k) => ({ kind: "param", key: k.key }));
    const plain = keys.metrics.map((k) => k.key).filter((k) => !k.includes("@"));
    const summary = keys.summary.filter((k) => !k.includes("@") && plain.includes(k));
    const metrics = (summary.length ? summary : plain).slice(0, 6).map((key) => ({ kind: "metric", key, agg: "last" }));
    return [...params, ...metrics];
  },

  async refresh() {
    const R = NSML.runs, q = this.fullQuery(), user = this.st("q", "").trim();
    const offset = Number(this.st("offset", 0)) || 0, sort = this.st("sort", "created"), order = this.st("order", "desc");
    let data;
    try {
      const keys = await this.keys(q);
      this.cols = this.columns(keys);
      data = await NSML.api(`/api/runs${NSML.query({
        param: this.cols.filter((c) => c.kind === "param").map((c) => c.key),
        metric: this.cols.filter((c) => c.kind === "metric").map((c) => `${c.key}:${c.agg}`),
        sort, order, offset, limit: R.PAGE, q, detail: "true" })}`);
    } catch (e) {
      if (e.status !== 400) throw e;
      // Say what is wrong with the user's own text (the message points into it), not the query
      // the page composed around it.
      let message = e.message;
      if (user) {
        try { await NSML.api(`/api/runs${NSML.query({ q: user, limit: 0 })}`); } catch (e2) { if (e2.status === 400) message = e2.message; }
      }
      this.qError.textContent = message;
      this.qError.hidden = false;
      this.count.textContent = "";
      NSML.clear(this.wrap).append(NSML.el("div", { class: "pad muted", text: "Fix the query to see sessions." }));
      NSML.clear(this.pager); NSML.clear(this.plotBox);
      return;
    }
    this.qError.hidden = true;
    this.data = data;
    this.count.textContent = `${data.total} session${data.total === 1 ? "" : "s"}${user ? ` matching “${user}”` : ""}`;
    this.render();
    this.plots();
    this.live();
  },

  /* Running and queued rows change: fetch the same page again every few seconds while any is
     shown, and redraw the rows (not while a tag is being typed). */
  live() {
    if (this.stop) this.stop();
    const active = (d) => d.rows.some((r) => r.status === "running" || r.status === "queued");
    if (!active(this.data)) { this.stop = null; return; }
    this.stop = NSML.poll(async () => {
      if (!this.box.isConnected) return false;
      if (this.box.querySelector(".tag-input")) return true;
      const url = `/api/runs${NSML.query({
        param: this.data.params, metric: this.data.metrics, sort: this.data.sort, order: this.data.order,
        offset: this.data.offset, limit: NSML.runs.PAGE, q: this.data.q, detail: "true" })}`;
      const d = await NSML.api(url);
      this.data = d;
      this.count.textContent = this.count.textContent.replace(/^\d+/, String(d.total));
      this.render();
      return active(d);
    }, 3000);
    NSML.live.add(this.stop);
  },

  headers() {
    const R = NSML.runs;
    return [
      { id: "pick", label: "", w: R.WIDTH.pick },
      { id: "name", label: "session", sort: "name", w: R.WIDTH.name },
      { id: "status", label: "status", sort: "status", w: R.WIDTH.status },
      { id: "created", label: "created", sort: "created", w: R.WIDTH.created },
      { id: "kind", label: "kind", w: R.WIDTH.kind },
      { id: "lineage", label: "lineage", w: R.WIDTH.lineage },
      ...this.cols.map((c) => ({ id: R.spec(c), col: c, label: R.label(c), sort: R.spec(c), w: R.WIDTH[c.kind] })),
      { id: "tags", label: "tags", w: R.WIDTH.tags },
      { id: "memo", label: "memo", w: R.WIDTH.memo },
    ];
  },

  render() {
    const R = NSML.runs, d = this.data, sort = d.sort, desc = d.order === "desc";
    const heads = this.headers();
    const colgroup = NSML.el("colgroup", {}, ...heads.map((h) => NSML.el("col", { dataset: { col: h.id }, style: `width:${this.widths[h.id] || h.w}px` })));
    const table = NSML.el("table", { class: "grid runs-table" }, colgroup);
    table.style.width = `${heads.reduce((a, h) => a + (this.widths[h.id] || h.w), 0)}px`;
    const tr = NSML.el("tr");
    for (const h of heads) {
      const th = NSML.el("th", { dataset: { col: h.id }, title: h.col ? `${h.col.kind === "param" ? "parameter" : `metric, its ${h.col.agg} value`} · click to sort` : h.sort ? "Click to sort" : null,
        class: (h.sort ? "sortable" : "") + (h.sort === sort ? (desc ? " desc" : " asc") : "") + (h.col ? ` ${h.col.kind}-col` : "") },
        NSML.el("span", { class: "th-label", text: h.label }));
      if (h.sort) th.addEventListener("click", (e) => {
        if (e.target.classList.contains("col-resize")) return;
        const order = h.sort === sort ? (desc ? "asc" : "desc") : h.col ? "desc" : h.sort === "name" ? "asc" : "desc";
        this.set({ sort: h.sort === "created" && order === "desc" ? null : h.sort, order: order === "desc" ? null : order, offset: null });
        this.refresh();
      });
      if (h.id !== "pick") th.append(this.resizer(h, table, colgroup));
      tr.append(th);
    }
    table.append(NSML.el("thead", {}, tr));
    const tb = NSML.el("tbody");
    for (const r of d.rows) tb.append(this.row(r));
    if (!d.rows.length) {
      const user = this.st("q", "").trim();
      const text = user ? `No sessions match “${user}”.` : this.filtered() || this.base().length ? "No sessions match these filters."
        : "No sessions: start one with nsml run -d DATASET.";
      tb.append(NSML.el("tr", { class: "empty" }, NSML.el("td", { colspan: heads.length, class: "muted", text })));
    }
    table.append(tb);
    const left = this.wrap.scrollLeft;
    NSML.clear(this.wrap).append(table);
    this.wrap.scrollLeft = left;
    this.applyBrush();
    const first = d.total ? d.offset + 1 : 0, last = d.offset + d.rows.length;
    NSML.clear(this.pager).append(...[
      NSML.el("span", { class: "muted small", text: d.total ? `rows ${first}–${last} of ${d.total}` : "" }),
      d.offset > 0 ? NSML.el("button", { type: "button", class: "small", dataset: { page: "prev" }, text: "← newer" + (sort === "created" && desc ? "" : " (previous)"),
        onclick: () => { this.set({ offset: Math.max(0, d.offset - R.PAGE) || null }); this.refresh(); } }) : null,
      last < d.total ? NSML.el("button", { type: "button", class: "small", dataset: { page: "next" }, text: sort === "created" && desc ? "older →" : "next →",
        onclick: () => { this.set({ offset: d.offset + R.PAGE }); this.refresh(); } }) : null].filter(Boolean));
  },

  /* A handle on a header's right edge: drag to resize the column (remembered in this browser). */
  resizer(h, table, colgroup) {
    return NSML.el("span", { class: "col-resize", title: "Drag to resize",
      onmousedown: (e) => {
        e.preventDefault(); e.stopPropagation();
        const col = colgroup.querySelector(`col[data-col="${CSS.escape(h.id)}"]`);
        const start = e.clientX, from = col.getBoundingClientRect().width || h.w, tableFrom = table.getBoundingClientRect().width;
        const move = (ev) => {
          const w = Math.max(36, Math.round(from + ev.clientX - start));
          col.style.width = `${w}px`;
          table.style.width = `${tableFrom + w - from}px`;
          this.widths[h.id] = w;
        };
        const up = () => {
          document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up);
          localStorage.setItem("nsml-runs-widths", JSON.stringify(this.widths));
        };
        document.addEventListener("mousemove", move); document.addEventListener("mouseup", up);
      },
      onclick: (e) => e.stopPropagation() });
  },

  row(r) {
    const R = NSML.runs, s = r.session || {};
    const cell = (id, attrs, ...kids) => NSML.el("td", { ...attrs, dataset: { col: id } }, ...kids);
    const kind = R.KIND[s.kind] || s.kind || "train";
    const link = (name) => NSML.el("a", { href: NSML.urls.session(name), text: name });
    let lineage = null;
    if (s.source) {
      const ckpt = s.source_checkpoint ? NSML.el("span", { class: "mono", text: ` @ ${s.source_checkpoint}` }) : null;
      const word = kind === "fork" ? "forked from " : kind === "submit" ? "submitted " : kind === "infer" ? "serves " : "from ";
      const score = s.submission ? [" ", NSML.session.submission({ ...s.submission, runner: "", created: r.created })] : [];
      lineage = NSML.el("span", { title: `${word}${s.source}${s.source_checkpoint ? ` checkpoint ${s.source_checkpoint}` : ""}` }, NSML.el("span", { class: "muted", text: word }), link(s.source), ckpt, ...score);
    }
    const tr = NSML.el("tr", { dataset: { session: r.name, id: String(r.id) }, class: NSML.nav.picked.has(r.name) ? "picked" : null },
      cell("pick", {}, NSML.el("input", { type: "checkbox", title: "Select to compare", checked: NSML.nav.picked.has(r.name), onchange: (e) => NSML.nav.pick(r.name, e.target.checked) })),
      cell("name", { title: r.name }, link(r.name)),
      cell("status", { class: "status" }, NSML.sessionStatus({ ...s, status: r.status })),
      cell("created", { class: "when", title: NSML.fmt.time(r.created), text: NSML.fmt.ago(r.created) }),
      cell("kind", {}, NSML.el("span", { class: `kind kind-${kind}`, text: kind, title: s.kind === "submit_test" ? "submit -t: scored, never ranked" : null })),
      cell("lineage", { class: "small" }, lineage),
      ...this.cols.map((c) => {
        const v = R.value(r, c);
        return cell(R.spec(c), { class: "mono num" + (v === null ? " none" : ""), title: v === null ? null : String(v), text: v === null ? "—" : typeof v === "number" ? NSML.fmt.num(v) : String(v) });
      }),
      cell("tags", { class: "tags" }, this.tags(r)),
      cell("memo", { class: "small memo-cell", title: s.memo || null, text: s.memo || "" }));
    return tr;
  },

  tags(r, box = NSML.el("span", { class: "tag-list" })) {
    NSML.clear(box);
    const change = async (body) => {
      try {
        const got = await NSML.api(`${NSML.urls.api(r.name)}/tags`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        r.tags = got.tags;
        this.tags(r, box);
      } catch (e) { NSML.toast(e.message, true); }
    };
    for (const tag of r.tags) {
      box.append(NSML.el("span", { class: "tag chip", dataset: { tag } },
        NSML.el("a", { href: "#", text: tag, title: `Sessions tagged ${tag}`, onclick: (e) => {
          e.preventDefault(); this.qInput.value = `tag:${NSML.runs.quote(tag)}`; this.set({ q: this.qInput.value, offset: null }); this.refresh(); } }),
        NSML.el("button", { type: "button", class: "icon tag-remove", title: `Remove the tag ${tag}`, text: "×", onclick: () => change({ remove: [tag] }) })));
    }
    box.append(NSML.el("button", { type: "button", class: "icon tag-add", title: "Add a tag", text: "+", onclick: (e) => {
      const input = NSML.el("input", { class: "tag-input small", maxlength: 64, placeholder: "tag", size: 8,
        onkeydown: (ev) => {
          if (ev.key === "Enter") { ev.preventDefault(); const v = input.value.trim(); if (v) change({ add: v.split(/[\s,]+/).filter(Boolean) }); else input.remove(); }
          else if (ev.key === "Escape") input.remove();
        }, onblur: () => setTimeout(() => input.remove(), 150) });
      e.target.before(input);
      input.focus();
    } }));
    return box;
  },

  /* The column picker: every parameter and metric key among the sessions the query selects. */
  async fillPicker() {
    const R = NSML.runs, keys = await this.keys(this.fullQuery());
    const shown = new Set(this.cols.map(R.spec));
    const filter = NSML.el("input", { type: "search", class: "small picker-filter", placeholder: "Filter keys" });
    const choose = (spec, on) => {
      const now = this.cols.map(R.spec).filter((s) => s !== spec);
      if (on) now.push(spec);
      this.set({ col: now.length ? now : ["none"], offset: null,
        ...(!on && this.st("sort") === spec ? { sort: null, order: null } : {}) });
      this.refresh().then(() => this.fillPicker());
    };
    const item = (spec, label, n) => NSML.el("label", { class: "chk small", dataset: { spec } },
      NSML.el("input", { type: "checkbox", checked: shown.has(spec), onchange: (e) => choose(spec, e.target.checked) }), label, n ? NSML.el("span", { class: "muted", text: ` ${n}` }) : null);
    const params = NSML.el("div", { class: "picker-list" }, ...keys.params.map((k) => item(`param:${k.key}`, k.key, k.sessions)));
    const metrics = NSML.el("div", { class: "picker-list" }, ...keys.metrics.map((k) => NSML.el("div", { class: "picker-metric", dataset: { key: k.key } },
      NSML.el("span", { class: "mono small", text: k.key }), ...["last", "min", "max"].map((agg) => item(`metric:${k.key}:${agg}`, agg)))));
    filter.oninput = () => {
      const f = filter.value.toLowerCase();
      this.picker.querySelectorAll("[data-spec], .picker-metric").forEach((x) => {
        const text = (x.dataset.key || R.parse(x.dataset.spec)?.key || "").toLowerCase();
        if (!x.closest(".picker-metric") || x.classList.contains("picker-metric")) x.hidden = !!f && !text.includes(f);
      });
    };
    NSML.clear(this.picker).append(NSML.el("div", { class: "picker-head" }, filter,
      NSML.el("button", { type: "button", class: "small", text: "Defaults", title: "The columns this view picks by itself", onclick: () => { this.set({ col: null }); this.refresh().then(() => this.fillPicker()); } }),
      NSML.el("button", { type: "button", class: "small", text: "Close", onclick: () => (this.picker.hidden = true) })),
    NSML.el("div", { class: "picker-cols" }, NSML.el("div", {}, NSML.el("h3", { text: `Parameters (${keys.params.length})` }), params),
      NSML.el("div", {}, NSML.el("h3", { text: `Metrics (${keys.metrics.length})` }), metrics)));
  },

  /* -- brushing: the parallel coordinates' ranges and the scatter's selection hide rows -------- */
  passes(r) {
    const R = NSML.runs;
    for (const [spec, ranges] of Object.entries(this.brush)) {
      const c = R.parse(spec), v = this.axisValue(r, c);
      if (v === null || !ranges.some(([lo, hi]) => v >= lo && v <= hi)) return false;
    }
    return !this.picked || this.picked.has(r.id);
  },
  applyBrush() {
    if (!this.data) return;
    const on = Object.keys(this.brush).length || this.picked;
    let n = 0;
    this.wrap.querySelectorAll("tbody tr[data-id]").forEach((tr) => {
      const r = this.data.rows.find((x) => String(x.id) === tr.dataset.id);
      const ok = !on || (r && this.passes(r));
      tr.classList.toggle("brushed-out", !ok);
      n += ok ? 1 : 0;
    });
    if (this.par) this.par.refilter(true);
    this.brushNote.hidden = !on;
    if (on) NSML.clear(this.brushNote).append(`${n} of ${this.data.rows.length} rows in the selection · `,
      NSML.el("a", { href: "#", text: "clear", onclick: (e) => { e.preventDefault(); this.brush = {}; this.picked = null; this.set({ brush: null }); this.applyBrush(); this.plots(); } }));
  },
  /* The row under the pointer in the plot is marked in the table, and the other way round. */
  hoverRow(id) {
    this.wrap.querySelectorAll("tbody tr.pc-hot").forEach((tr) => tr.classList.remove("pc-hot"));
    if (id !== null) this.wrap.querySelector(`tbody tr[data-id="${CSS.escape(String(id))}"]`)?.classList.add("pc-hot");
  },
  shownRows() { return this.data ? this.data.rows.filter((r) => (!Object.keys(this.brush).length && !this.picked) || this.passes(r)) : []; },

  /* A column's value on a numeric axis: numbers as they are, booleans 0/1, texts by their rank. */
  axisValue(r, c) {
    const v = NSML.runs.value(r, c);
    if (v === null || v === undefined) return null;
    if (typeof v === "number") return v;
    if (typeof v === "boolean") return v ? 1 : 0;
    const cats = this.categories?.[NSML.runs.spec(c)];
    return cats ? cats.indexOf(String(v)) : null;
  },

  plots() {
    if (!this.data) return;
    const R = NSML.runs, rows = this.data.rows, par = this.st("par") === "1", scatter = this.st("scatter") === "1";
    NSML.clear(this.plotBox);
    this.par = null;
    this.categories = {};
    const usable = this.cols.filter((c) => rows.some((r) => R.value(r, c) !== null));
    for (const c of usable) {
      const texts = [...new Set(rows.map((r) => R.value(r, c)).filter((v) => typeof v === "string"))].sort();
      if (texts.length) this.categories[R.spec(c)] = texts;
    }
    if (!par && !scatter) return;
    if (!rows.length || !usable.length) { this.plotBox.append(NSML.el("div", { class: "muted small pad", text: "Nothing to plot: no parameter or metric column has values on this page." })); return; }
    const css = NSML.theme.color, fg = css("--fg"), grid = css("--grid"), accent = css("--accent");
    const layoutBase = { paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { color: fg, size: 11 } };
    // URL brushes (brush=SPEC~LO~HI): the shared link draws the same selection.
    if (!this._brushRead) {
      this._brushRead = true;
      for (const b of this.stAll("brush")) {
        const [spec, lo, hi] = b.split("~");
        if (R.parse(spec) && !isNaN(+lo) && !isNaN(+hi)) (this.brush[spec] = this.brush[spec] || []).push([+lo, +hi]);
      }
      this.applyBrush();
    }
    if (par) {
      const box = NSML.el("div", { class: "runs-plot parcoords", dataset: { plot: "parcoords" } });
      this.plotBox.append(box);
      const sortCol = R.parse(this.data.sort);
      const colorCol = (sortCol && usable.find((c) => R.spec(c) === R.spec(sortCol))) || usable[usable.length - 1];
      this.par = NSML.parcoords.draw(box, {
        axes: usable.map((c) => ({ key: R.spec(c), label: R.label(c), cats: this.categories[R.spec(c)] || null, values: rows.map((r) => this.axisValue(r, c)) })),
        rows: rows.map((r) => ({ id: r.id, name: r.name })),
        color: { label: R.label(colorCol), cats: this.categories[R.spec(colorCol)] || null, values: rows.map((r) => this.axisValue(r, colorCol)) },
        brush: this.brush,
        keep: (i) => !this.picked || this.picked.has(rows[i].id),
        onBrush: (brush) => {
          this.brush = structuredClone(brush);
          this.set({ brush: Object.entries(this.brush).flatMap(([spec, rs]) => rs.map(([lo, hi]) => `${spec}~${+lo.toPrecision(6)}~${+hi.toPrecision(6)}`)) });
          this.applyBrush();
        },
        onHover: (id) => this.hoverRow(id),
      });
    }
    if (scatter && typeof Plotly !== "undefined") {
      const specs = usable.map(R.spec);
      const pick = (k, d) => (specs.includes(this.st(k)) ? this.st(k) : d);
      const px = pick("px", specs[0]), py = pick("py", specs[Math.min(1, specs.length - 1)]);
      const sel = (k, v) => NSML.el("select", { class: "small", dataset: { axis: k }, onchange: (e) => { this.set({ [k]: e.target.value }); this.plots(); } },
        ...usable.map((c) => NSML.el("option", { value: R.spec(c), text: R.label(c), selected: R.spec(c) === v })));
      const box = NSML.el("div", { class: "runs-plot scatter", dataset: { plot: "scatter" } });
      this.plotBox.append(NSML.el("div", { class: "scatter-wrap" }, NSML.el("div", { class: "controls small scatter-axes" }, "x ", sel("px", px), " y ", sel("py", py)), box));
      const cx = R.parse(px), cy = R.parse(py);
      const axis = (c) => {
        const cats = this.categories[R.spec(c)];
        return { title: { text: R.label(c) }, gridcolor: grid, zeroline: false, ...(cats ? { tickvals: cats.map((_, i) => i), ticktext: cats } : {}) };
      };
      const marked = rows.map((r) => this.passes(r));
      Plotly.newPlot(box, [{ type: "scatter", mode: "markers", x: rows.map((r) => this.axisValue(r, cx)), y: rows.map((r) => this.axisValue(r, cy)),
        customdata: rows.map((r) => r.id), text: rows.map((r) => r.name), hovertemplate: "%{text}<br>x %{x}<br>y %{y}<extra></extra>",
        marker: { color: marked.map((m) => (m ? accent : grid)), size: 9, line: { width: 1, color: fg } } }],
      { ...layoutBase, margin: { l: 60, r: 20, t: 10, b: 44 }, height: 300, dragmode: "select", xaxis: axis(cx), yaxis: axis(cy) },
      { displaylogo: false, responsive: true });
      box.on("plotly_selected", (ev) => {
        this.picked = ev && ev.points && ev.points.length ? new Set(ev.points.map((p) => p.customdata)) : null;
        this.applyBrush();
      });
      box.on("plotly_deselect", () => { this.picked = null; this.applyBrush(); });
    }
  },

  /* -- CSV of the rows shown (after brushing), the columns as the table has them ---------------- */
  csvText() {
    const R = NSML.runs;
    const q = (v) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
    const head = ["session", "status", "created", "kind", "source", "source_checkpoint", ...this.cols.map(R.spec), "tags", "memo"];
    const lines = [head.map(q).join(",")];
    for (const r of this.shownRows()) {
      const s = r.session || {};
      lines.push([r.name, r.status, new Date(r.created * 1000).toISOString(), R.KIND[s.kind] || s.kind || "", s.source || "", s.source_checkpoint || "",
        ...this.cols.map((c) => R.value(r, c)), r.tags.join(" "), s.memo || ""].map(q).join(","));
    }
    return lines.join("\n") + "\n";
  },
  csv() {
    const url = URL.createObjectURL(new Blob([this.csvText()], { type: "text/csv" }));
    const a = NSML.el("a", { href: url, download: "nsml-runs.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  },
};
