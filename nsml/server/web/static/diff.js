/* Side-by-side diff of two sessions' code and arguments (computed by the server with difflib). */
"use strict";
NSML.diff = {
  async render(box, a, b) {
    NSML.clear(box).append(NSML.el("div", { class: "pad muted", text: "Comparing…" }));
    let d;
    try { d = await NSML.api(`/api/web/diff${NSML.query({ a, b })}`); }
    catch (e) { NSML.clear(box).append(NSML.el("div", { class: "pad notice", text: e.message })); return; }
    NSML.clear(box);
    const c = d.counts;
    box.append(NSML.el("div", { class: "diff-summary" },
      NSML.el("a", { href: NSML.urls.session(d.a.name), text: d.a.name }), " ⟷ ", NSML.el("a", { href: NSML.urls.session(d.b.name), text: d.b.name }),
      NSML.el("span", { class: "muted", text: ` · ${c.changed} changed, ${c.added} added, ${c.removed} removed, ${c.same} unchanged file${c.same === 1 ? "" : "s"}` }),
      NSML.el("a", { class: "small", href: NSML.urls.compare([d.a.name, d.b.name]), text: " · overlay their graphs →" })));
    const args = NSML.el("table", { class: "grid args-diff" },
      NSML.el("thead", {}, NSML.el("tr", {}, NSML.el("th", { text: "argument" }), NSML.el("th", { text: d.a.name }), NSML.el("th", { text: d.b.name }))),
      NSML.el("tbody", {}, ...d.args.map((r) => NSML.el("tr", { class: r.same ? "" : "differs" },
        NSML.el("td", { class: "mono", text: r.key }), NSML.el("td", { class: "mono", text: r.a ?? "—" }), NSML.el("td", { class: "mono", text: r.b ?? "—" })))));
    if (!d.args.length) args.append(NSML.el("tbody", {}, NSML.el("tr", {}, NSML.el("td", { colspan: 3, class: "muted", text: "Neither session has -a arguments." }))));
    box.append(NSML.el("h3", { text: "Arguments" }), args, NSML.el("h3", { text: "Code" }));
    const changed = d.files.filter((f) => f.status !== "same");
    if (!changed.length) box.append(NSML.el("div", { class: "muted pad", text: "The uploaded code is identical." }));
    for (const f of changed) box.append(this.file(f));
    const same = d.files.filter((f) => f.status === "same");
    if (same.length) box.append(NSML.el("details", { class: "small muted" }, NSML.el("summary", { text: `${same.length} unchanged file${same.length === 1 ? "" : "s"}` }),
      NSML.el("div", { class: "mono", text: same.map((f) => f.path).join("  ") })));
  },

  file(f) {
    const head = NSML.el("div", { class: "file-head" }, NSML.el("span", { class: `fstat fs-${f.status}`, text: f.status }), NSML.el("code", { text: f.path }));
    const wrap = NSML.el("div", { class: "diff-file", dataset: { path: f.path } }, head);
    if (f.binary) { wrap.append(NSML.el("div", { class: "muted pad", text: "binary or large file: not shown" })); return wrap; }
    const table = NSML.el("table", { class: "diff" }, NSML.el("colgroup", {}, NSML.el("col", { class: "ln" }), NSML.el("col"), NSML.el("col", { class: "ln" }), NSML.el("col")));
    const cell = (side, cls) => side
      ? [NSML.el("td", { class: "ln", text: side[0] }), NSML.el("td", { class: `code ${cls}`, text: side[1] })]
      : [NSML.el("td", { class: "ln" }), NSML.el("td", { class: "code empty" })];
    for (const r of f.rows) {
      if (r.t === "skip") { table.append(NSML.el("tr", { class: "skip" }, NSML.el("td", { colspan: 4, text: `⋯ ${r.n} unchanged lines` }))); continue; }
      const lc = r.t === "eq" ? "" : "del", rc = r.t === "eq" ? "" : "ins";
      table.append(NSML.el("tr", { class: r.t }, ...cell(r.l, lc), ...cell(r.r, rc)));
    }
    wrap.append(table);
    return wrap;
  },
};
