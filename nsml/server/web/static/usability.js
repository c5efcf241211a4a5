/* Usability analytics (opt-in: nsml server --usage-analytics; docs/web.md "Usability").
   Records the kind of page (<body data-page>), views, time on a page and clicks on controls
   that have an id, and posts them to this server only: never a URL, a name or a value.
   Also the admins' Usability page, which summarises them. */
NSML.usability = (function () {
  const PAGES = ["home", "dataset", "session", "compare", "resources", "board", "usability", "login", "diff"];
  const on = () => document.body.dataset.analytics === "on";
  const page = () => (PAGES.includes(document.body.dataset.page) ? document.body.dataset.page : "other");
  let queue = [], shown = performance.now(), timer = null;
  const post = (beacon) => {
    if (!queue.length) return;
    const body = JSON.stringify({ events: queue.splice(0, 100) });
    if (beacon && navigator.sendBeacon) navigator.sendBeacon("/api/web/events", new Blob([body], { type: "application/json" }));
    else fetch("/api/web/events", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body }).catch(() => {});
  };
  const add = (action, ms) => {
    queue.push(ms === undefined ? { page: page(), action } : { page: page(), action, ms: Math.max(0, Math.round(ms)) });
    if (!timer) timer = setTimeout(() => { timer = null; post(false); }, 5000);
  };
  function start() {
    if (!on()) return;
    add("view");
    document.addEventListener("click", (e) => {
      const control = e.target.closest("button[id], a[id], input[id], select[id], summary[id]");
      if (control && /^[a-z][a-z0-9-]{0,47}$/.test(control.id)) add(`click:${control.id}`);
    }, true);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") { add("leave", performance.now() - shown); post(true); }
      else { shown = performance.now(); add("view"); }
    });
  }
  document.addEventListener("DOMContentLoaded", start);
  return { add, post };
})();

NSML.pages.usability = async function (main) {
  const days = NSML.state.get("days", "30");
  const s = await NSML.api(`/api/web/usability?days=${encodeURIComponent(days)}`);
  const table = (heads, rows) => NSML.el("table", { class: "grid" },
    NSML.el("thead", {}, NSML.el("tr", {}, ...heads.map((h) => NSML.el("th", { text: h })))),
    NSML.el("tbody", {}, ...(rows.length ? rows.map((r) => NSML.el("tr", {}, ...r.map((c) => NSML.el("td", { text: c ?? "—" }))))
      : [NSML.el("tr", {}, NSML.el("td", { colspan: heads.length, class: "muted", text: "Nothing recorded yet." }))])));
  NSML.clear(main).append(
    NSML.el("h1", { text: "Usability" }),
    NSML.el("p", { class: "muted", text: `${s.users} users over the last ${s.days} days. Only kinds of page and named controls are recorded, on this server.` }),
    NSML.el("h2", { text: "Pages" }), table(["page", "views", "mean time on page (s)"], s.pages.map((p) => [p.page, p.views, p.mean_seconds])),
    NSML.el("h2", { text: "Back and forth" }),
    NSML.el("p", { class: "muted", text: "Users who left a page and came straight back to it (within a minute): where the page did not have what they needed." }),
    table(["page", "left for", "times"], s.back_and_forth.map((b) => [b.page, b.via, b.count])),
    NSML.el("h2", { text: "Moves" }), table(["from", "to", "times"], s.moves.map((m) => [m.from, m.to, m.count])),
    NSML.el("h2", { text: "Controls" }), table(["page", "control", "clicks"], s.controls.map((c) => [c.page, c.control, c.clicks])));
};
