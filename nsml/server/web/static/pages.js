/* Pages other than the session page, and the start-up that picks one by <body data-page>. */
"use strict";

/* A session's status in a list: a queued one's place and the reason it waits (under its badge,
   in full in the tooltip), a zombie marker on a running one whose GPUs idle, and why a session
   is lost or paused. */
NSML.STATUS_NOTES = {
  lost: "Its supervisor (or node) stopped answering: the platform lost track of it. nsml resume runs it again.",
  paused: "Set aside with its resources released; nsml resume continues it.",
};
NSML.sessionStatus = function (s) {
  const badge = NSML.badge(s.status);
  const out = [badge];
  if (s.status === "queued" && (s.queue_position || s.queue_reason)) {
    const text = `${s.queue_position ? `#${s.queue_position} in queue` : "queued"}${s.queue_reason ? ` · ${s.queue_reason}` : ""}`;
    badge.title = text;
    out.push(NSML.el("div", { class: "queue-note small muted", title: text, text }));
  } else if (NSML.STATUS_NOTES[s.status]) badge.title = NSML.STATUS_NOTES[s.status];
  if (s.status === "running" && s.zombie && s.zombie.length) {
    out.push(NSML.el("span", { class: "badge zombie-mark", text: "zombie?",
      title: `GPU ${s.zombie.join(", ")} ${s.zombie.length === 1 ? "has" : "have"} been at 0 % utilisation for longer than the idle threshold while this session holds ${s.zombie.length === 1 ? "it" : "them"}` }));
  }
  return out;
};

/* Sessions: the runs table (runs.js) with the query language in its search box, status
   filters and the Public/Private switch, which it turns into query terms of its own. */
NSML.pages.home = async function (main) {
  const dataset = NSML.state.get("dataset", "");
  // NSML's Public/Private switch: everyone's sessions, or only your own.
  const scope = NSML.state.get("scope", "public");
  const box = NSML.el("div");
  const base = () => {
    const statuses = NSML.state.all("status");
    return [NSML.state.get("scope") === "private" ? `user:${NSML.runs.quote(NSML.nav.me)}` : null,
      dataset ? `dataset:${NSML.runs.quote(dataset)}` : null,
      statuses.length ? `(${statuses.map((st) => `status:${st}`).join(" or ")})` : null].filter(Boolean);
  };
  const scopes = NSML.el("span", { class: "scope" }, ...["public", "private"].map((sc) => NSML.el("button", {
    type: "button", class: "small" + (sc === scope ? " on" : ""), text: sc === "public" ? "Public" : "Private", title: sc === "public" ? "Everyone's sessions" : "Only your sessions",
    dataset: { scope: sc }, onclick: (e) => {
      NSML.state.set({ scope: sc === "public" ? null : sc, offset: null });
      scopes.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b === e.target));
      table.refresh();
    } })));
  const chips = NSML.el("div", { class: "controls" }, scopes, dataset ? NSML.el("span", { class: "chip", text: `dataset ${dataset}` }) : null,
    ...["running", "queued", "exited", "failed", "stopped", "paused", "lost"].map((st) => NSML.el("label", { class: "chk" },
      NSML.el("input", { type: "checkbox", checked: NSML.state.all("status").includes(st), onchange: (e) => {
        const next = new Set(NSML.state.all("status"));
        e.target.checked ? next.add(st) : next.delete(st);
        NSML.state.set({ status: [...next], offset: null });
        table.refresh();
      } }), NSML.badge(st))));
  NSML.clear(main).append(NSML.el("h1", { text: "Sessions" }), chips, box);
  const table = NSML.runs.mount(box, { base, filtered: () => NSML.state.all("status").length > 0 || NSML.state.get("scope") === "private" || !!dataset });
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
    NSML.runs.mount(box, { base: () => [`dataset:${NSML.runs.quote(d.name)}`] });
  },
};

/* Several sessions overlaid: the Graph view without a base session. */
NSML.pages.compare = async function (main) {
  const box = NSML.el("div");
  const runs = NSML.el("div", { class: "compare-runs" });
  NSML.clear(main).append(NSML.el("h1", { text: "Compare sessions" }), box);
  NSML.graph.mount(box, null);
  // The compared sessions as a runs table too (its settings prefixed r: rsort, rcol, …).
  const names = [...new Set(NSML.state.all("s"))].slice(0, 60);
  if (names.length) {
    main.append(NSML.el("h3", { text: "Runs table" }), runs);
    NSML.runs.mount(runs, { ns: "r", base: () => [`(${names.map((n) => `name = ${NSML.runs.quote(n)}`).join(" or ")})`] });
  }
};

NSML.pages.diff = async function (main) {
  const box = NSML.el("div");
  NSML.clear(main).append(NSML.el("h1", { text: "Diff" }), box);
  const a = NSML.state.get("a"), b = NSML.state.get("b");
  if (a && b) NSML.diff.render(box, a, b);
  else box.append(NSML.el("div", { class: "pad muted", text: "Open a diff from a session's Diff tab, or /diff?a=OWNER/DATASET/N&b=OWNER/DATASET/M." }));
};

/* The cluster: totals, then each node (CPUs and memory held, one tile per GPU with its holder,
   utilisation and memory in use), grouped by GPU model; then the queue in scheduling order,
   each session with its position and the reason it waits; then who holds what.
   Past 64 GPUs the tiles are compact squares (details in their tooltip); `view` picks either.
   A session's request is a reservation (the default memory is the whole of a small node), so
   every figure says which it is: "reserved", or "in use" from the latest usage samples (CPU as
   cores busy, memory resident), with "no sample yet" where there is none. */
NSML.resources = {
  COMPACT_ABOVE: 64, // GPUs
  short: (model) => (model || "").replace(/^((NVIDIA|Tesla|GeForce|Quadro)\s+)+/i, "").split(/[\s-]/)[0] || model || "GPU",
  hue(name) { // one colour per holding session, the same on every tile and row it holds
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return (h * 47) % 360;
  },
  gb: (n) => { const g = n / 2 ** 30; return g >= 100 || Number.isInteger(g) ? String(Math.round(g)) : g.toFixed(1); },
  pct: (used, cap) => `${cap && isFinite(used) ? Math.min(100, Math.max(0, (100 * used) / cap)) : 0}%`,
  // Cores busy: two decimals under one core (an idle session reads 0.02, not 0), fewer above.
  cores: (c) => (!isFinite(c) ? "—" : c === 0 ? "0" : c < 0.01 ? "< 0.01" : c < 1 ? c.toFixed(2) : c < 10 ? String(+c.toFixed(1)) : String(Math.round(c))),
  USE_TITLE: "in use: the latest usage sample (every 5 s): CPU as cores busy (its % of one core / 100), memory resident (RSS)",
  /* "0.02 in use" for one session's use (null: no sample yet), or for a sum over sessions
     (`sampled` of `sessions` had one), which says so when some had none. */
  use(u, key, fmt) {
    if (!u) return "in use: no sample yet";
    if (u.sessions === undefined) return `${fmt(u[key])} in use`;
    if (!u.sessions) return `${fmt(0)} in use`;
    if (!u.sampled) return "in use: no samples yet";
    return `${fmt(u[key])} in use${u.sampled < u.sessions ? ` (${u.sampled} of ${u.sessions} sessions sampled)` : ""}`;
  },
  pair: (reserved, u, key, fmt, useFmt) => `${fmt(reserved)} reserved · ${NSML.resources.use(u, key, useFmt || fmt)}`,
  band: (u, key, cap) => (u && u.sampled !== 0 && cap ? NSML.el("span", { class: "in-use", style: `width:${NSML.resources.pct(u[key], cap)}` }) : null),

  tile(node, g, compact) {
    const held = !!g.holder, idle = held && g.util === 0;
    const gb = NSML.resources.gb, used = g.memory_used ?? null;
    const mem = g.memory ? (used !== null ? `${gb(used)} / ${gb(g.memory)} GB` : `${gb(g.memory)} GB`) : used !== null ? `${gb(used)} GB used` : "";
    const util = g.util === null || g.util === undefined ? "—" : `${Math.round(g.util)} %`;
    const title = [`${node.name} · GPU ${g.index}${g.name ? ` · ${g.name}` : ""}`, held ? `held by ${g.holder}` : "free",
      held ? `utilisation ${util}${idle ? " (idle)" : ""}` : null, mem ? `memory ${mem}` : null].filter(Boolean).join("\n");
    const attrs = { class: `gpu ${held ? "held" : "free"}${idle ? " idle" : ""}`, title, dataset: { index: String(g.index), ...(held ? { holder: g.holder } : {}) },
      style: held ? `--h:${NSML.resources.hue(g.holder)}` : null, href: held ? NSML.urls.session(g.holder) : null };
    const bar = held && typeof g.util === "number" ? NSML.el("span", { class: "gpu-util-bar", style: `width:${Math.min(100, g.util)}%` }) : null;
    if (compact) return NSML.el(held ? "a" : "span", attrs, NSML.el("span", { class: "gpu-index", text: String(g.index) }), bar);
    return NSML.el(held ? "a" : "div", attrs,
      NSML.el("span", { class: "gpu-top" }, NSML.el("b", { class: "gpu-index", text: String(g.index) }),
        NSML.el("span", { class: "gpu-model", text: NSML.resources.short(g.name) }), held ? NSML.el("span", { class: "gpu-util", text: util }) : null),
      NSML.el("span", { class: "gpu-holder", text: held ? g.holder : "free" }),
      NSML.el("span", { class: "gpu-mem", text: mem || "\u00a0" }), bar);
  },

  node(n, compact) {
    const R = NSML.resources, free = n.gpus.filter((g) => !g.holder).length;
    const reserved = n.reserved || n.used, u = n.in_use;
    const mini = (label, key, cap, text, fmt) => {
      const use = R.use(u, key, fmt);
      return NSML.el("div", { class: "mini", dataset: { kind: key }, title: `${label}: ${text} reserved by its sessions\n${use}\n(${R.USE_TITLE})` },
        NSML.el("span", { class: "mini-label" }, NSML.el("b", { text: label }), ` ${text} reserved`),
        NSML.el("span", { class: "bar" }, NSML.el("span", { class: "fill", style: `width:${R.pct(reserved[key], cap)}` }), R.band(u, key, cap)),
        NSML.el("span", { class: "use-line", text: use }));
    };
    return NSML.el("section", { class: "node" + (n.gpus.length && !free ? " full" : ""), dataset: { node: n.name } },
      NSML.el("div", { class: "node-head" }, NSML.el("b", { class: "node-name", text: n.name }),
        NSML.el("span", { class: "muted small", text: n.gpus.length ? `${free} of ${n.gpus.length} GPU${n.gpus.length === 1 ? "" : "s"} free` : "no GPUs" })),
      NSML.el("div", { class: "node-bars" },
        mini("CPU", "cpus", n.cpus, `${NSML.fmt.num(reserved.cpus)} / ${NSML.fmt.num(n.cpus)}`, R.cores),
        mini("Mem", "memory", n.memory, `${R.gb(reserved.memory)} / ${R.gb(n.memory)} GB`, NSML.fmt.bytes)),
      n.gpus.length ? NSML.el("div", { class: "gpus" }, ...n.gpus.map((g) => R.tile(n, g, compact))) : null);
  },

  /* Nodes grouped by GPU model (a node of mixed models under all of them, joined). */
  groups(nodes) {
    const out = new Map();
    for (const n of nodes) {
      const key = [...new Set(n.gpus.map((g) => g.name || "GPU"))].join(" + ") || "CPU only";
      if (!out.has(key)) out.set(key, []);
      out.get(key).push(n);
    }
    return out;
  },

  matches(n, f) {
    if (!f) return true;
    return [n.name, ...n.gpus.map((g) => g.name), ...n.gpus.map((g) => g.holder || "")].some((t) => t.toLowerCase().includes(f));
  },
};

NSML.pages.resources = async function (main) {
  const R = NSML.resources;
  const filter = NSML.el("input", { type: "search", id: "node-filter", placeholder: "Filter nodes: name, GPU model or session", value: NSML.state.get("node", "") });
  const freeOnly = NSML.el("input", { type: "checkbox", id: "free-only", checked: NSML.state.get("free") === "1" });
  const views = NSML.el("span", { class: "scope" });
  const box = NSML.el("div", { id: "resources" });
  NSML.clear(main).append(NSML.el("h1", { text: "Resources" }), box);
  // A total: what the running sessions reserved of the capacity, and (CPU, memory) what they use.
  const meter = (label, key, cap, fmt, useFmt) => {
    const reserved = (r.reserved || r.used)[key], use = useFmt ? R.use(r.in_use, key, useFmt) : null;
    return NSML.el("div", { class: "meter", dataset: { kind: key }, title: use ? R.USE_TITLE : "" },
      NSML.el("div", { class: "meter-label" }, NSML.el("b", { text: label }), ` ${fmt(reserved)} of ${fmt(cap)} reserved${use ? ` · ${use}` : ""}`),
      NSML.el("div", { class: "bar" }, NSML.el("div", { class: "fill", style: `width:${R.pct(reserved, cap)}` }), useFmt ? R.band(r.in_use, key, cap) : null));
  };
  // A running session's GPUs, each with its latest utilisation and memory when sampled.
  const gpuUse = (h) => h.gpu_ids.map((i) => {
    const g = (h.in_use?.gpus || []).find((x) => x.index === i);
    return g && typeof g.util === "number" ? `${i} (${Math.round(g.util)} %${typeof g.memory === "number" ? `, ${NSML.fmt.bytes(g.memory)}` : ""})` : String(i);
  }).join(", ") || "—";
  const row = (cells, attrs) => NSML.el("tr", attrs || {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : NSML.el("td", {}, c))));
  const table = (cls, heads, rows, empty) => NSML.el("table", { class: `grid ${cls}` }, NSML.el("thead", {}, NSML.el("tr", {}, ...heads.map((h) => NSML.el("th", { text: h })))),
    NSML.el("tbody", {}, ...(rows.length ? rows : [NSML.el("tr", {}, NSML.el("td", { colspan: heads.length, class: "muted", text: empty }))])));
  const link = (name) => NSML.el("a", { href: NSML.urls.session(name), text: name });
  const plural = (n, what) => `${NSML.fmt.num(n)} ${what}${n === 1 ? "" : "s"}`;
  let r = null;

  const render = () => {
    if (!r) return;
    const gpuCount = r.nodes.reduce((a, n) => a + n.gpus.length, 0);
    const view = NSML.state.get("view") || (gpuCount > R.COMPACT_ABOVE ? "compact" : "detail");
    const compact = view === "compact";
    NSML.clear(views).append(...[["detail", "Detailed"], ["compact", "Compact"]].map(([v, label]) => NSML.el("button", {
      type: "button", class: "small" + (v === view ? " on" : ""), text: label, dataset: { view: v },
      title: v === "detail" ? "Each GPU's holder, utilisation and memory on its tile" : "Small tiles, details in their tooltip",
      onclick: () => { NSML.state.set({ view: v }); render(); } })));
    const f = filter.value.trim().toLowerCase();
    const shown = r.nodes.filter((n) => R.matches(n, f) && (!freeOnly.checked || n.gpus.some((g) => !g.holder)));
    const groups = [...R.groups(shown)].map(([model, nodes]) => {
      const gpus = nodes.flatMap((n) => n.gpus), free = gpus.filter((g) => !g.holder).length;
      return NSML.el("div", { class: "node-group" },
        NSML.el("div", { class: "group-title" }, NSML.el("b", { text: model }),
          NSML.el("span", { class: "muted", text: ` · ${plural(nodes.length, "node")}${gpus.length ? ` · ${free} of ${gpus.length} GPUs free` : ""}` })),
        NSML.el("div", { class: `nodes ${compact ? "compact" : "detail"}` }, ...nodes.map((n) => R.node(n, compact))));
    });
    const top = r.largest || {};
    const holders = r.holders.map((h) => row([link(h.session), h.owner, h.node || "—", gpuUse(h),
      NSML.el("td", { class: "nowrap cpus", title: R.USE_TITLE, text: R.pair(h.cpus, h.in_use, "cpus", NSML.fmt.num, R.cores) }),
      NSML.el("td", { class: "nowrap memory", title: R.USE_TITLE, text: R.pair(h.memory, h.in_use, "memory", NSML.fmt.bytes) }),
      NSML.el("span", { class: `prio prio-${h.priority}`, text: h.priority }), NSML.fmt.duration(Date.now() / 1000 - (h.started || h.created))],
    { dataset: { holder: h.session }, style: h.gpu_ids.length ? `--h:${R.hue(h.session)}` : null, class: h.gpu_ids.length ? "holder" : null }));
    const queue = r.queue.map((q) => row([String(q.position), link(q.session), q.team ? `${q.owner} (${q.team})` : q.owner,
      NSML.el("td", { class: "nowrap", text: `${plural(q.gpus, "GPU")} · ${plural(q.cpus, "CPU")} · ${NSML.fmt.bytes(q.memory)}` }),
      NSML.el("span", { class: `prio prio-${q.priority}`, text: q.priority }), NSML.el("td", { class: "nowrap", title: `queued ${NSML.fmt.time(q.created)}`, text: NSML.fmt.duration(q.waiting) }),
      NSML.el("td", { class: "reason", text: q.reason })], { dataset: { session: q.session } }));
    NSML.clear(box).append(
      NSML.el("div", { class: "meters" }, meter("CPUs", "cpus", r.capacity.cpus, NSML.fmt.num, R.cores),
        meter("Memory", "memory", r.capacity.memory, NSML.fmt.bytes, NSML.fmt.bytes), meter("GPUs", "gpus", r.capacity.gpus, NSML.fmt.num, null)),
      NSML.el("div", { class: "controls small muted" },
        NSML.el("span", { text: `${plural(r.nodes.length, "node")} · the largest has ${plural(top.gpus || 0, "GPU")}, ${plural(top.cpus || 0, "CPU")} and ${NSML.fmt.bytes(top.memory || 0)} (no session can ask for more)` }),
        NSML.el("a", { href: "#queue", text: r.queue.length ? `${r.queue.length} queued ↓` : "queue empty ↓" })),
      NSML.el("h3", { text: `Nodes (${shown.length === r.nodes.length ? r.nodes.length : `${shown.length} of ${r.nodes.length}`})` }),
      NSML.el("div", { class: "controls" }, filter, NSML.el("label", { class: "chk" }, freeOnly, "with free GPUs"), views,
        NSML.el("span", { class: "legend small muted" }, NSML.el("span", { class: "gpu free key" }), "free", NSML.el("span", { class: "gpu held key" }), "held (a colour per session)",
          NSML.el("span", { class: "gpu held idle key" }), "held at 0 %")),
      ...(groups.length ? groups : [NSML.el("div", { class: "pad muted", text: r.nodes.length ? "No node matches." : "This server has no nodes." })]),
      NSML.el("h3", { id: "queue", text: `Queue (${r.queue.length})` }),
      table("queue", ["#", "session", "owner", "request", "priority", "waiting", "reason"], queue, "The queue is empty."),
      NSML.el("h3", { text: `Running (${r.holders.length})` }),
      table("holders", ["session", "owner", "node", "GPUs (utilisation, memory)", "CPUs", "memory", "priority", "running for"], holders, "No running sessions."),
      ...NSML.sharing.standing(r),
      sharing,
      NSML.el("h3", { text: "Who holds what" }),
      table("owners", ["owner", "sessions", "CPUs", "memory", "GPUs reserved"], r.owners.map((o) => row([o.owner, String(o.sessions),
        NSML.el("td", { class: "nowrap cpus", text: R.pair(o.cpus, o.in_use, "cpus", NSML.fmt.num, R.cores) }),
        NSML.el("td", { class: "nowrap memory", text: R.pair(o.memory, o.in_use, "memory", NSML.fmt.bytes) }), String(o.gpus)])), "Nothing is running."));
  };
  filter.oninput = () => { NSML.state.set({ node: filter.value.trim() }); render(); };
  freeOnly.onchange = () => { NSML.state.set({ free: freeOnly.checked }); render(); };
  // Hovering a GPU tile or a running session's row marks everything that session holds.
  box.addEventListener("mouseover", (e) => {
    const holder = e.target.closest?.("[data-holder]")?.dataset.holder || null;
    if (holder === box.dataset.hl) return;
    box.querySelectorAll(".same").forEach((x) => x.classList.remove("same"));
    if (holder) box.querySelectorAll(`[data-holder="${CSS.escape(holder)}"]`).forEach((x) => x.classList.add("same"));
    if (holder) box.dataset.hl = holder; else delete box.dataset.hl;
  });
  const draw = async () => { r = await NSML.api("/api/resources"); render(); if (box.dataset.hl) box.querySelectorAll(`[data-holder="${CSS.escape(box.dataset.hl)}"]`).forEach((x) => x.classList.add("same")); };
  const sharing = NSML.el("div", { class: "sharing" }); // kept across renders: fetched on its own, less often
  await draw();
  NSML.live.add(NSML.poll(draw, 3000));
  NSML.sharing.usage(sharing).catch((e) => NSML.toast(e.message, true));
  NSML.live.add(NSML.poll(async () => { await NSML.sharing.usage(sharing); return true; }, 30000));
};

document.addEventListener("DOMContentLoaded", async () => {
  if (!(await NSML.nav.init())) return;
  const page = NSML.pages[document.body.dataset.page] || NSML.pages.home;
  try { await page(document.getElementById("main")); }
  catch (e) { if (e.message !== "not logged in") NSML.toast(e.message, true); console.error(e); }
});
