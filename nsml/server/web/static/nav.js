/* Left panel: datasets (filter, size, age); expanding one lists its sessions as `rev : N` with
   status, age, summary and quick stop/remove. Checked (or Alt+clicked) sessions can be compared. */
"use strict";
NSML.nav = {
  open: new Set(JSON.parse(sessionStorage.getItem("nsml-open") || "[]")),
  picked: new Set(JSON.parse(sessionStorage.getItem("nsml-picked") || "[]")),
  datasets: [],

  async init() {
    document.getElementById("theme").onclick = NSML.theme.toggle;
    // The side panel folds away (remembered in this browser): the room a narrow window needs.
    const side = document.getElementById("side-toggle");
    const fold = (on) => {
      document.body.classList.toggle("side-hidden", on);
      side.setAttribute("aria-expanded", String(!on));
      side.title = on ? "Show the side panel" : "Hide the side panel";
    };
    fold(localStorage.getItem("nsml-side") === "hidden");
    side.onclick = () => {
      const on = !document.body.classList.contains("side-hidden");
      localStorage.setItem("nsml-side", on ? "hidden" : "shown");
      fold(on);
      window.dispatchEvent(new Event("resize")); // charts take the room
    };
    const search = document.getElementById("search");
    search.value = document.body.dataset.page === "home" ? NSML.state.get("q", "") : "";
    const filter = document.getElementById("ds-filter");
    filter.value = sessionStorage.getItem("nsml-ds-filter") || "";
    filter.oninput = () => { sessionStorage.setItem("nsml-ds-filter", filter.value); this.render(); };
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("on", a.dataset.nav === document.body.dataset.page.split("-")[0]));
    try {
      const me = await NSML.api("/api/whoami");
      document.getElementById("me").textContent = me.user;
      this.me = me.user;
      if (me.admin && document.body.dataset.analytics === "on") { // the admins' summary of the recorded clicks
        const link = NSML.el("a", { href: "/usability", text: "Usability", dataset: { nav: "usability" }, class: document.body.dataset.page === "usability" ? "on" : null });
        document.querySelector("#top nav").append(link);
      }
    } catch (e) { return false; }
    await this.load();
    this.updatePicked();
    NSML.poll(() => this.refreshOpen(), 4000);
    return true;
  },

  async load() {
    this.datasets = await NSML.api("/api/datasets");
    this.render();
  },

  save() {
    sessionStorage.setItem("nsml-open", JSON.stringify([...this.open]));
    sessionStorage.setItem("nsml-picked", JSON.stringify([...this.picked]));
  },

  render() {
    const box = NSML.clear(document.getElementById("datasets"));
    const f = document.getElementById("ds-filter").value.trim().toLowerCase();
    const shown = this.datasets.filter((d) => !f || d.name.toLowerCase().includes(f));
    if (!shown.length) box.append(NSML.el("div", { class: "muted pad", text: f ? "No dataset matches." : "No datasets yet: nsml dataset push NAME PATH" }));
    const current = location.pathname.startsWith("/datasets/") ? decodeURIComponent(location.pathname.split("/")[2]) : null;
    for (const d of shown) {
      const isOpen = this.open.has(d.name);
      const row = NSML.el("div", { class: "ds" + (d.name === current ? " current" : ""), dataset: { name: d.name } },
        NSML.el("button", { class: "caret", type: "button", "aria-expanded": String(isOpen), title: "Show sessions",
          text: isOpen ? "▾" : "▸", onclick: () => this.toggle(d.name) }),
        NSML.el("a", { class: "ds-name", href: NSML.urls.dataset(d.name), text: d.name }),
        NSML.el("span", { class: "muted small", text: `${NSML.fmt.bytes(d.size)} · ${NSML.fmt.ago(d.updated)}` }));
      const list = NSML.el("div", { class: "ds-sessions", id: `ds-${d.name}` });
      box.append(row, list);
      if (isOpen) this.fill(d.name, list);
    }
  },

  toggle(name) {
    this.open.has(name) ? this.open.delete(name) : this.open.add(name);
    this.save();
    this.render();
  },

  async fill(name, list) {
    const data = await NSML.api(`/api/web/sessions${NSML.query({ dataset: name, limit: 100 })}`);
    NSML.clear(list);
    if (!data.sessions.length) list.append(NSML.el("div", { class: "muted small pad-l", text: "no sessions" }));
    for (const s of data.sessions) list.append(this.sessionRow(s));
    if (data.total > data.sessions.length) {
      list.append(NSML.el("a", { class: "small pad-l", href: NSML.urls.home({ dataset: name }), text: `all ${data.total} sessions…` }));
    }
  },

  sessionRow(s) {
    const here = location.pathname === `/sessions/${s.name}`;
    const active = s.status === "running" || s.status === "queued";
    const pick = NSML.el("input", { type: "checkbox", title: "Select to compare (Alt+click a row)", checked: this.picked.has(s.name),
      onchange: (e) => this.pick(s.name, e.target.checked) });
    const row = NSML.el("div", { class: "sess" + (here ? " current" : "") + (this.picked.has(s.name) ? " picked" : ""), dataset: { session: s.name } },
      pick,
      NSML.el("a", { href: NSML.urls.session(s.name), class: "rev", text: `${s.owner === this.me ? "" : s.owner + " "}rev : ${s.number}` }),
      NSML.badge(s.status),
      NSML.el("span", { class: "muted small", text: NSML.fmt.ago(s.created) }),
      NSML.el("span", { class: "actions" },
        active ? NSML.el("button", { type: "button", class: "icon", title: "Stop", text: "●", onclick: () => this.stop(s.name) }) : null,
        NSML.el("button", { type: "button", class: "icon", title: "Remove", text: "×", onclick: () => this.remove(s.name, active) })),
      NSML.el("div", { class: "sum small muted", title: s.memo || "", text: NSML.fmt.summary(Object.keys(s.summary).length ? s.summary : s.last_values) || s.memo || s.args }));
    row.addEventListener("click", (e) => {
      if (e.altKey) { e.preventDefault(); this.pick(s.name, !this.picked.has(s.name)); }
    });
    return row;
  },

  pick(name, on) {
    on ? this.picked.add(name) : this.picked.delete(name);
    this.save();
    document.querySelectorAll(`[data-session="${CSS.escape(name)}"]`).forEach((r) => {
      r.classList.toggle("picked", on);
      const box = r.querySelector("input[type=checkbox]");
      if (box) box.checked = on;
    });
    this.updatePicked();
  },

  updatePicked() {
    const btn = document.getElementById("compare-selected");
    btn.hidden = this.picked.size === 0;
    btn.textContent = `Compare ${this.picked.size}`;
    btn.href = NSML.urls.compare([...this.picked]);
    btn.title = "Overlay the selected sessions' graphs; Shift+click clears the selection";
    btn.onclick = (e) => { if (e.shiftKey) { e.preventDefault(); [...this.picked].forEach((n) => this.pick(n, false)); } };
  },

  async stop(name) {
    try { await NSML.api(NSML.urls.api(name) + "/stop", { method: "POST" }); NSML.toast(`${name} is stopping`); }
    catch (e) { NSML.toast(e.message, true); }
    this.refreshOpen();
  },

  async remove(name, active) {
    if (!confirm(`Remove ${name}${active ? " (it is running: it will be killed)" : ""} with its logs, metrics and checkpoints?`)) return;
    try {
      await NSML.api(`/api/sessions${NSML.query({ pattern: name, force: active ? "true" : "" })}`, { method: "DELETE" });
      NSML.toast(`${name} removed`);
      this.pick(name, false);
    } catch (e) { NSML.toast(e.message, true); }
    this.refreshOpen();
  },

  async refreshOpen() {
    for (const name of this.open) {
      const list = document.getElementById(`ds-${name}`);
      if (list) await this.fill(name, list);
    }
  },
};
