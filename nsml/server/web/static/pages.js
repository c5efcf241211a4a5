/* Pages other than the session page, and the start-up that picks one by <body data-page>. */
"use strict";

/* Sessions: the global search (q matches name, memo, args), status filter, pages of 50. */
NSML.pages.home = async function (main) {
  const q = NSML.state.get("q", ""), dataset = NSML.state.get("dataset", ""), offset = Number(NSML.state.get("offset", 0));
  const statuses = NSML.state.all("status");
  // NSML's Public/Private switch: everyone's sessions, or only your own.
  const scope = NSML.state.get("scope", "public");
  const owner = scope === "private" ? NSML.nav.me : undefined;
  const data = await NSML.api(`/api/web/sessions${NSML.query({ q, dataset, status: statuses, owner, offset, limit: 50 })}`);
  const scopes = NSML.el("span", { class: "scope" }, ...["public", "private"].map((sc) => NSML.el("button", {
    class: "small" + (sc === scope ? " on" : ""), text: sc === "public" ? "Public" : "Private", title: sc === "public" ? "Everyone's sessions" : "Only your sessions",
    dataset: { scope: sc }, onclick: () => { NSML.state.set({ scope: sc === "public" ? null : sc, offset: null }); NSML.pages.home(main); } })));
  const chips = NSML.el("div", { class: "controls" }, scopes, NSML.el("span", { class: "muted", text: `${data.total} session${data.total === 1 ? "" : "s"}${q ? ` matching “${q}”` : ""}${dataset ? ` in ${dataset}` : ""}` }),
    ...["running", "queued", "exited", "failed", "stopped"].map((st) => NSML.el("label", { class: "chk" },
      NSML.el("input", { type: "checkbox", checked: statuses.includes(st), onchange: (e) => {
        const next = new Set(NSML.state.all("status"));
        e.target.checked ? next.add(st) : next.delete(st);
        NSML.state.set({ status: [...next], offset: null });
        NSML.pages.home(main);
      } }), NSML.badge(st))));
  const table = NSML.el("table", { class: "grid sessions" }, NSML.el("thead", {}, NSML.el("tr", {},
    ...["", "session", "status", "created", "args", "summary", "memo"].map((h) => NSML.el("th", { text: h })))));
  const tb = NSML.el("tbody");
  for (const s of data.sessions) {
    tb.append(NSML.el("tr", { dataset: { session: s.name } },
      NSML.el("td", {}, NSML.el("input", { type: "checkbox", title: "Select to compare", checked: NSML.nav.picked.has(s.name), onchange: (e) => NSML.nav.pick(s.name, e.target.checked) })),
      NSML.el("td", {}, NSML.el("a", { href: NSML.urls.session(s.name), text: s.name })),
      NSML.el("td", {}, NSML.badge(s.status)),
      NSML.el("td", { class: "when", title: NSML.fmt.time(s.created), text: NSML.fmt.ago(s.created) }),
      NSML.el("td", { class: "mono small", text: s.args }),
      NSML.el("td", { class: "small", text: NSML.fmt.summary(Object.keys(s.summary).length ? s.summary : s.last_values) }),
      NSML.el("td", { class: "small", text: s.memo })));
  }
  if (!data.sessions.length) tb.append(NSML.el("tr", {}, NSML.el("td", { colspan: 7, class: "muted", text: "No sessions: start one with nsml run -d DATASET." })));
  table.append(tb);
  const pager = NSML.el("div", { class: "controls" },
    offset > 0 ? NSML.el("a", { class: "button small", href: NSML.urls.home({ q, dataset, status: statuses, offset: Math.max(0, offset - 50) }), text: "← newer" }) : null,
    offset + data.sessions.length < data.total ? NSML.el("a", { class: "button small", href: NSML.urls.home({ q, dataset, status: statuses, offset: offset + 50 }), text: "older →" }) : null);
  NSML.clear(main).append(NSML.el("h1", { text: "Sessions" }), chips, table, pager);
};

/* A dataset: description, leaderboard (best per owner / all submissions), files, sessions. */
NSML.pages.dataset = async function (main) {
  const name = decodeURIComponent(location.pathname.split("/")[2]);
  let d;
  try { d = await NSML.api(`/api/datasets/${encodeURIComponent(name)}`); }
  catch (e) { NSML.clear(main).append(NSML.el("div", { class: "pad notice", text: e.message })); return; }
  const body = NSML.el("div", { class: "tab-body" });
  const bar = NSML.el("div");
  NSML.clear(main).append(NSML.el("div", { class: "page-head" },
    NSML.el("h1", {}, d.name, d.private ? NSML.el("span", { class: "badge", text: "private" }) : null),
    NSML.el("div", { class: "meta" }, NSML.el("span", { text: d.description || "No description." }),
      NSML.el("span", { class: "muted", text: `${d.owner} · ${d.file_count} file${d.file_count === 1 ? "" : "s"} · ${NSML.fmt.bytes(d.size)} · updated ${NSML.fmt.ago(d.updated)}${d.has_test ? " · hidden test split" : ""}` }))), bar, body);
  const show = (tab) => {
    NSML.state.set({ tab: tab === "board" ? null : tab });
    NSML.clear(bar).append(NSML.tabs([["board", "Leaderboard"], ["files", "Files"], ["sessions", "Sessions"]], tab, show));
    NSML.datasetTabs[tab](NSML.clear(body), d);
  };
  show(NSML.state.get("tab", "board"));
};

NSML.datasetTabs = {
  async board(box, d) {
    const all = NSML.state.get("all") === "1";
    const toggle = NSML.el("div", { class: "controls" },
      ...[["best per owner", false], ["all submissions", true]].map(([label, v]) => NSML.el("button", {
        type: "button", class: "small" + (all === v ? " on" : ""), text: label,
        onclick: () => { NSML.state.set({ all: v }); NSML.datasetTabs.board(NSML.clear(box), d); } })));
    box.append(toggle);
    let board;
    try { board = await NSML.api(`/api/datasets/${encodeURIComponent(d.name)}/board${NSML.query({ all: all ? "true" : "false" })}`); }
    catch (e) {
      box.append(NSML.el("div", { class: "pad muted", text: e.status === 404 ? `${d.name} has no leaderboard.` : e.message }));
      return;
    }
    if (!board.rows.length) { box.append(NSML.el("div", { class: "pad muted", text: `No ranked submissions yet (metric: ${board.metric}). Submit with nsml submit SESSION CHECKPOINT.` })); return; }
    box.append(NSML.el("table", { class: "grid board" },
      NSML.el("thead", {}, NSML.el("tr", {}, ...["#", "owner", `${board.metric} (${board.order === "asc" ? "lower" : "higher"} is better)`, "session", "checkpoint", "submissions", "when"].map((h) => NSML.el("th", { text: h })))),
      NSML.el("tbody", {}, ...board.rows.map((r) => NSML.el("tr", {},
        NSML.el("td", { text: r.rank }), NSML.el("td", { text: r.owner }), NSML.el("td", { class: "mono", text: NSML.fmt.num(r.score) }),
        NSML.el("td", {}, r.removed ? NSML.el("span", { class: "muted", title: "this session was removed", text: `${r.session} (removed)` })
          : NSML.el("a", { href: NSML.urls.session(r.session), text: r.session })), NSML.el("td", { class: "mono", text: r.checkpoint }),
        NSML.el("td", { text: r.count }), NSML.el("td", { title: NSML.fmt.time(r.created), text: NSML.fmt.ago(r.created) }))))));
  },

  async files(box, d) {
    const files = await NSML.api(`/api/datasets/${encodeURIComponent(d.name)}/files`);
    box.append(NSML.el("table", { class: "grid" }, NSML.el("thead", {}, NSML.el("tr", {}, NSML.el("th", { text: "path" }), NSML.el("th", { text: "size" }))),
      NSML.el("tbody", {}, ...files.map((f) => NSML.el("tr", {}, NSML.el("td", { class: "mono", text: f.path }), NSML.el("td", { text: NSML.fmt.bytes(f.size) }))))));
  },

  async sessions(box, d) {
    const data = await NSML.api(`/api/web/sessions${NSML.query({ dataset: d.name, limit: 200 })}`);
    box.append(NSML.el("table", { class: "grid" }, NSML.el("thead", {}, NSML.el("tr", {}, ...["session", "status", "created", "args", "summary"].map((h) => NSML.el("th", { text: h })))),
      NSML.el("tbody", {}, ...data.sessions.map((s) => NSML.el("tr", {}, NSML.el("td", {}, NSML.el("a", { href: NSML.urls.session(s.name), text: s.name })),
        NSML.el("td", {}, NSML.badge(s.status)), NSML.el("td", { text: NSML.fmt.ago(s.created) }), NSML.el("td", { class: "mono small", text: s.args }),
        NSML.el("td", { class: "small", text: NSML.fmt.summary(s.summary) }))))));
  },
};

/* Several sessions overlaid: the Graph view without a base session. */
NSML.pages.compare = async function (main) {
  const box = NSML.el("div");
  NSML.clear(main).append(NSML.el("h1", { text: "Compare sessions" }), box);
  NSML.graph.mount(box, null);
};

NSML.pages.diff = async function (main) {
  const box = NSML.el("div");
  NSML.clear(main).append(NSML.el("h1", { text: "Diff" }), box);
  const a = NSML.state.get("a"), b = NSML.state.get("b");
  if (a && b) NSML.diff.render(box, a, b);
  else box.append(NSML.el("div", { class: "pad muted", text: "Open a diff from a session's Diff tab, or /diff?a=OWNER/DATASET/N&b=OWNER/DATASET/M." }));
};

/* The machine: capacity, who holds what now, per-GPU holders, and the queue. */
NSML.pages.resources = async function (main) {
  const box = NSML.el("div");
  NSML.clear(main).append(NSML.el("h1", { text: "Resources" }), box);
  const meter = (label, used, cap, fmt) => NSML.el("div", { class: "meter" },
    NSML.el("div", { class: "meter-label" }, NSML.el("b", { text: label }), ` ${fmt(used)} of ${fmt(cap)} held`),
    NSML.el("div", { class: "bar" }, NSML.el("div", { class: "fill", style: `width:${cap ? Math.min(100, (100 * used) / cap) : 0}%` })));
  const row = (cells) => NSML.el("tr", {}, ...cells.map((c) => NSML.el("td", {}, c)));
  const table = (heads, rows, empty) => NSML.el("table", { class: "grid" }, NSML.el("thead", {}, NSML.el("tr", {}, ...heads.map((h) => NSML.el("th", { text: h })))),
    NSML.el("tbody", {}, ...(rows.length ? rows : [NSML.el("tr", {}, NSML.el("td", { colspan: heads.length, class: "muted", text: empty }))])));
  const link = (name) => NSML.el("a", { href: NSML.urls.session(name), text: name });
  const draw = async () => {
    const r = await NSML.api("/api/resources");
    const id = (x) => String(x);
    NSML.clear(box).append(
      NSML.el("div", { class: "meters" }, meter("CPUs", r.used.cpus, r.capacity.cpus, id), meter("Memory", r.used.memory, r.capacity.memory, NSML.fmt.bytes), meter("GPUs", r.used.gpus, r.capacity.gpus, id)),
      NSML.el("h3", { text: `GPUs (${r.gpus.length})` }),
      table(["index", "name", "memory", "held by"], r.gpus.map((g) => row([String(g.index), g.name || "—", g.memory ? NSML.fmt.bytes(g.memory) : "—", g.holder ? link(g.holder) : NSML.el("span", { class: "muted", text: "free" })])), "This machine has no GPUs."),
      NSML.el("h3", { text: "Who holds what" }),
      table(["owner", "sessions", "CPUs", "memory", "GPUs"], r.owners.map((o) => row([o.owner, String(o.sessions), String(o.cpus), NSML.fmt.bytes(o.memory), String(o.gpus)])), "Nothing is running."),
      table(["session", "CPUs", "memory", "GPUs", "running for"], r.holders.map((h) => row([link(h.session), String(h.cpus), NSML.fmt.bytes(h.memory), h.gpu_ids.join(", ") || "—", NSML.fmt.duration(Date.now() / 1000 - (h.started || h.created))])), "No running sessions."),
      NSML.el("h3", { text: `Queue (${r.queue.length})` }),
      table(["#", "session", "CPUs", "memory", "GPUs", "waiting"], r.queue.map((q) => row([String(q.position), link(q.session), String(q.cpus), NSML.fmt.bytes(q.memory), String(q.gpus), NSML.fmt.duration(q.waiting)])), "The queue is empty."));
  };
  await draw();
  NSML.live.add(NSML.poll(draw, 3000));
};

document.addEventListener("DOMContentLoaded", async () => {
  if (!(await NSML.nav.init())) return;
  const page = NSML.pages[document.body.dataset.page] || NSML.pages.home;
  try { await page(document.getElementById("main")); }
  catch (e) { if (e.message !== "not logged in") NSML.toast(e.message, true); console.error(e); }
});
