/* The Graph's arguments table: common `-a` arguments as chips, differing ones as sortable
   columns; each row toggles its session's lines and shows its colour. */
"use strict";
NSML.graph.argsTable = function () {
  const box = NSML.clear(this.argsBox);
  const { common, differing } = this.data.args;
  const all = this.opt("allargs") === "1";
  const cols = all ? [...differing, ...Object.keys(common)] : differing;
  const hidden = new Set(NSML.state.all("hide"));
  const sort = this.opt("sort", "");
  const desc = sort.startsWith("-"), sortKey = sort.replace(/^-/, "");
  const rows = [...this.data.sessions];
  if (sortKey) {
    const val = (s) => (sortKey === "name" ? s.name : s.params[sortKey]);
    rows.sort((a, b) => {
      const x = val(a), y = val(b);
      const nx = Number(x), ny = Number(y);
      const c = x === undefined ? 1 : y === undefined ? -1 : !isNaN(nx) && !isNaN(ny) ? nx - ny : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
  }
  const commonText = Object.entries(common).map(([k, v]) => `${k}=${v}`);
  box.append(NSML.el("div", { class: "common small" },
    NSML.el("span", { class: "muted", text: `Common args ${commonText.length} · Selected ${rows.length - hidden.size} of ${rows.length}` }),
    ...commonText.map((t) => NSML.el("code", { class: "chip", text: t })),
    NSML.el("label", { class: "chk small" }, NSML.el("input", { id: "all-args", type: "checkbox", checked: all,
      onchange: (e) => { NSML.state.set({ allargs: e.target.checked }); this.argsTable(); } }), "all columns")));
  const header = (key, label) => NSML.el("th", { class: "sortable" + (sortKey === key ? (desc ? " desc" : " asc") : ""), title: "Sort",
    dataset: { key }, text: label,
    onclick: () => { NSML.state.set({ sort: sortKey === key && !desc ? "-" + key : key }); this.argsTable(); } });
  const table = NSML.el("table", { class: "grid args-table" },
    NSML.el("thead", {}, NSML.el("tr", {}, NSML.el("th", {}), header("name", "session"), NSML.el("th", { text: "status" }),
      ...cols.map((k) => header(k, k === "_" ? "(positional)" : k)), NSML.el("th", {}))));
  const body = NSML.el("tbody");
  for (const s of rows) {
    const color = this.colorOf(s.name);
    const tr = NSML.el("tr", { dataset: { session: s.name }, class: hidden.has(s.name) ? "off" : "",
      onmouseenter: () => this.highlight(s.name), onmouseleave: () => this.highlight(null) },
      NSML.el("td", {}, NSML.el("input", { type: "checkbox", title: "Show this session's lines", checked: !hidden.has(s.name),
        onchange: (e) => {
          const h = new Set(NSML.state.all("hide"));
          e.target.checked ? h.delete(s.name) : h.add(s.name);
          NSML.state.set({ hide: [...h] });
          tr.classList.toggle("off", !e.target.checked);
          this.draw();
        } }), NSML.el("span", { class: "swatch", style: `background:${color}` })),
      NSML.el("td", {}, NSML.el("a", { href: NSML.urls.session(s.name), text: s.name })),
      NSML.el("td", {}, NSML.badge(s.status)),
      ...cols.map((k) => NSML.el("td", { class: "mono" + (differing.includes(k) ? " differs" : ""), text: s.params[k] ?? "—" })),
      NSML.el("td", {}, s.name === this.base ? null : NSML.el("button", { type: "button", class: "icon", title: "Remove from graph", text: "×",
        onclick: () => this.removeSession(s.name) })));
    body.append(tr);
  }
  table.append(body);
  box.append(NSML.el("div", { class: "args-scroll" }, table));
  if (rows.length === 2) {
    box.append(NSML.el("a", { class: "small", href: NSML.urls.diff(rows[0].name, rows[1].name), text: "Diff these two sessions' code →" }));
  }
};
