/* The session page: header, then tabs Terminal, Graph, Diff, Checkpoints, Info (tab in the URL). */
"use strict";
NSML.pages.session = async function (main) {
  const name = decodeURIComponent(location.pathname.replace(/^\/sessions\//, "")).replace(/\/$/, "");
  let s;
  try { s = await NSML.api(NSML.urls.api(name)); }
  catch (e) { NSML.clear(main).append(NSML.el("div", { class: "pad notice", text: e.message })); return; }
  const head = NSML.el("div", { class: "page-head" });
  const body = NSML.el("div", { class: "tab-body", id: "tab-body" });
  const tabs = [["terminal", "Terminal"], ["graph", "Graph"], ["diff", "Diff"], ["checkpoints", "Checkpoints"], ["info", "Info"]];
  const bar = NSML.el("div");
  NSML.clear(main).append(head, bar, body);

  const renderHead = () => {
    const active = s.status === "running" || s.status === "queued";
    NSML.clear(head).append(
      NSML.el("h1", {}, NSML.el("a", { href: s.dataset === ".nodata" ? NSML.urls.home({ dataset: s.dataset }) : NSML.urls.dataset(s.dataset), class: "muted", title: s.dataset === ".nodata" ? "run without a dataset" : "", text: `${s.owner}/${s.dataset}/` }), String(s.number), " ", NSML.badge(s.status),
        NSML.session.pauseNote(s)),
      NSML.el("div", { class: "meta" },
        NSML.el("code", { text: s.command }),
        NSML.el("span", { class: "muted", text: `created ${NSML.fmt.ago(s.created)}` }),
        s.kind !== "normal" ? NSML.el("span", { class: "muted", text: `${s.kind} of ${s.source}${s.source_checkpoint ? " @" + s.source_checkpoint : ""}` }) : null,
        s.memo ? NSML.el("span", { class: "memo", text: s.memo }) : null,
        NSML.el("span", { class: "grow" }),
        active ? NSML.el("button", { type: "button", class: "small", text: "Stop", onclick: async () => {
          try { s = await NSML.api(NSML.urls.api(name) + "/stop", { method: "POST" }); renderHead(); } catch (e) { NSML.toast(e.message, true); }
        } }) : null,
        ...NSML.session.stopAndGo(s, name, (fresh) => { s = fresh; renderHead(); watch(); }),
        NSML.el("a", { class: "button small", href: NSML.urls.api(name) + "/code", text: "Code ⤓", title: "Download the uploaded code (tar)" }),
        NSML.el("a", { class: "button small", href: NSML.urls.api(name) + "/outputs", text: "Outputs ⤓", title: "Download the files the session wrote (tar)" })));
  };
  // While it runs or waits, the header follows it (status, memo, a pause under way); a resume
  // from the header starts following it again.
  let stopWatch = null;
  const watch = () => {
    if (stopWatch) stopWatch();
    stopWatch = NSML.poll(async () => {
      if (s.status !== "running" && s.status !== "queued") return false;
      const fresh = await NSML.api(NSML.urls.api(name));
      const changed = ["status", "memo", "pausable", "pause_requested", "pause_error", "attempt"].some((k) => fresh[k] !== s[k]);
      s = fresh;
      if (changed) renderHead();
    }, 2000);
  };
  renderHead();
  watch();

  const show = (tab) => {
    NSML.live.stopAll();
    NSML.state.set({ tab: tab === "terminal" ? null : tab });
    NSML.clear(bar).append(NSML.tabs(tabs, tab, show));
    const view = NSML.session[tab] || NSML.session.terminal;
    view(NSML.clear(body), name, s);
  };
  show(NSML.state.get("tab", "terminal"));
};

NSML.session = {
  /* Stop-and-go in the header, for the session's owner (docs/scheduler.md): Pause for a running
     or queued training session (greyed, saying why, when its script bound no save), Resume for
     a paused, stopped, failed or lost one. `done` gets the session as the server answered. */
  stopAndGo(s, name, done) {
    if (s.owner !== NSML.nav.me || (s.kind !== "normal" && s.kind !== "fork")) return [];
    const act = (what, label) => NSML.el("button", { type: "button", class: "small", id: `${what}-session`, text: label, onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const fresh = await NSML.api(NSML.urls.api(name) + "/" + what, { method: "POST" });
        NSML.toast(what === "pause" ? (fresh.status === "paused" ? "Paused (it had not started)" : "Pausing: saving a checkpoint through the bound save…")
          : `Queued again${fresh.resumed_from ? " from checkpoint " + fresh.resumed_from : ""}`);
        done(fresh);
      } catch (e) { ev.target.disabled = false; NSML.toast(e.message, true); }
    } });
    if (s.status === "queued") return [act("pause", "Pause")];
    if (s.status === "running") {
      if (s.pause_requested) return [NSML.el("button", { type: "button", class: "small", text: "Pausing…", disabled: true })];
      const b = act("pause", "Pause");
      if (!s.pausable) {
        b.disabled = true;
        b.title = "Its script has not bound a save function (nsml.bind(save=...)), so a pause would lose its progress; Stop ends it instead.";
      } else b.title = "Save a checkpoint through the bound save and set the session aside, its resources released; Resume continues it.";
      return [b];
    }
    if (["paused", "stopped", "failed", "lost"].includes(s.status)) {
      const b = act("resume", "Resume");
      b.title = "Run it again under its name from its latest checkpoint (--pause 1 --iteration CHECKPOINT)";
      return [b];
    }
    return [];
  },

  /* What a pause did or is doing, beside the status badge. */
  pauseNote(s) {
    let text = "";
    if (s.status === "running" && s.pause_requested) text = s.pause_requested === "preempt" ? "preempted: saving a checkpoint…" : "pausing: saving a checkpoint…";
    else if (s.status === "paused") text = s.pause_checkpoint ? `at checkpoint ${s.pause_checkpoint}` : "before it started";
    else if (s.status === "running" && s.pause_error) text = `pause failed: ${s.pause_error}`;
    if (!text) return null;
    return NSML.el("span", { class: "muted small pause-note", title: s.status === "paused" ? "Set aside with its resources released; Resume (nsml resume) continues it." : "", text: ` ${text}` });
  },

  /* Live log: the last lines first, then every new byte by offset; search highlights matches. */
  terminal(box, name) {
    const MAX_CHARS = 2_000_000; // keep the page fast on huge logs: older text is dropped from view
    const find = NSML.el("input", { id: "log-search", type: "search", placeholder: "Search log", value: NSML.state.get("find", "") });
    const count = NSML.el("span", { class: "muted small" });
    const follow = NSML.el("input", { id: "follow", type: "checkbox", checked: true });
    const wrap = NSML.el("input", { type: "checkbox", checked: NSML.state.get("wrap") === "1" });
    const pre = NSML.el("pre", { id: "log", class: "terminal", tabindex: "0" });
    const state = NSML.el("span", { class: "muted small" });
    box.append(NSML.el("div", { class: "controls" }, find, count,
      NSML.el("label", { class: "chk" }, follow, "follow"), NSML.el("label", { class: "chk" }, wrap, "wrap"), NSML.el("span", { class: "grow" }), state), pre);
    let text = "", offset = 0;
    const render = () => {
      const q = find.value;
      pre.classList.toggle("wrap", wrap.checked);
      if (!q) { pre.textContent = text; count.textContent = ""; }
      else {
        const parts = text.split(q);
        NSML.clear(pre);
        parts.forEach((p, i) => { pre.append(p); if (i < parts.length - 1) pre.append(NSML.el("mark", { text: q })); });
        count.textContent = `${parts.length - 1} match${parts.length === 2 ? "" : "es"}`;
      }
      if (follow.checked && !q) pre.scrollTop = pre.scrollHeight;
    };
    const add = (chunk) => {
      if (!chunk) return;
      text += chunk;
      if (text.length > MAX_CHARS) text = text.slice(text.indexOf("\n", text.length - MAX_CHARS) + 1);
      if (!find.value) { pre.append(chunk); if (follow.checked) pre.scrollTop = pre.scrollHeight; } else render();
    };
    find.oninput = () => { NSML.state.set({ find: find.value }); render(); };
    find.onkeydown = (e) => { if (e.key === "Enter") { const marks = pre.querySelectorAll("mark"); if (marks.length) { this.hit = ((this.hit ?? -1) + 1) % marks.length; marks[this.hit].scrollIntoView({ block: "center" }); } } };
    wrap.onchange = () => { NSML.state.set({ wrap: wrap.checked }); render(); };
    const url = NSML.urls.api(name) + "/logs";
    NSML.api(url + NSML.query({ tail: 5000 })).then((chunk) => {
      text = chunk.text; offset = chunk.offset; render();
      state.textContent = chunk.done ? `ended (${chunk.status})` : chunk.status;
      if (chunk.done) return;
      NSML.live.add(NSML.poll(async () => {
        const next = await NSML.api(url + NSML.query({ offset }));
        offset = next.offset;
        add(next.text);
        state.textContent = next.done ? `ended (${next.status})` : next.status;
        return !next.done;
      }, 700));
    });
  },

  graph(box, name) { NSML.graph.mount(box, name); },

  diff(box, name, s) {
    const other = NSML.el("input", { id: "diff-with", type: "search", list: "diff-options", placeholder: "Compare with OWNER/DATASET/N", value: NSML.state.get("b", "") });
    const options = NSML.el("datalist", { id: "diff-options" });
    const out = NSML.el("div");
    const go = () => { NSML.state.set({ b: other.value.trim() }); if (other.value.trim()) NSML.diff.render(out, name, other.value.trim()); };
    other.onkeydown = (e) => { if (e.key === "Enter") go(); };
    other.onchange = go;
    box.append(NSML.el("div", { class: "controls" }, NSML.el("span", { text: `${name}  vs ` }), other, options,
      NSML.el("button", { type: "button", text: "Diff", onclick: go })), out);
    NSML.api(`/api/web/sessions${NSML.query({ dataset: s.dataset, limit: 200 })}`).then((d) =>
      d.sessions.filter((x) => x.name !== name).forEach((x) => options.append(NSML.el("option", { value: x.name, text: x.args }))));
    if (other.value) go();
    else out.append(NSML.el("div", { class: "pad muted", text: "Pick another session to see a side-by-side diff of code and arguments." }));
  },

  /* One submit of a checkpoint: its score (or how far it got), linked to the submit session. */
  submission(x) {
    const what = x.status === "scored" ? `score ${NSML.fmt.num(x.score)}` : x.status;
    const text = `${what}${x.test ? " (-t)" : ""}`;
    const title = `${x.test ? "submit -t: scored, never ranked" : "ranked on the leaderboard"}; ${NSML.fmt.time(x.created)}`;
    return x.runner ? NSML.el("a", { class: `submission submission-${x.status}`, href: NSML.urls.session(x.runner), title, text })
      : NSML.el("span", { class: `submission submission-${x.status}`, title, text });
  },

  async checkpoints(box, name, s) {
    const table = NSML.el("table", { class: "grid" });
    box.append(table);
    const fill = async () => {
      const rows = await NSML.api(NSML.urls.api(name) + "/checkpoints");
      NSML.clear(table).append(NSML.el("thead", {}, NSML.el("tr", {}, ...["checkpoint", "saved", "elapsed", "summary", "submitted", "size", ""].map((h) => NSML.el("th", { text: h })))));
      const tb = NSML.el("tbody");
      if (!rows.length) tb.append(NSML.el("tr", {}, NSML.el("td", { colspan: 7, class: "muted", text: "No checkpoints yet: the session saves them with nsml.save()." })));
      for (const c of rows) {
        tb.append(NSML.el("tr", { dataset: { checkpoint: c.name } }, NSML.el("td", { class: "mono", text: c.name }), NSML.el("td", { title: NSML.fmt.time(c.created), text: NSML.fmt.ago(c.created) }),
          NSML.el("td", { text: NSML.fmt.duration(c.elapsed) }), NSML.el("td", { class: "small", text: NSML.fmt.summary(c.summary) }),
          NSML.el("td", { class: "submitted small" }, ...(c.submissions || []).map((x) => NSML.session.submission(x))),
          NSML.el("td", { text: NSML.fmt.bytes(c.size) }),
          NSML.el("td", {}, NSML.el("a", { href: `${NSML.urls.api(name)}/checkpoints/${encodeURIComponent(c.name)}/archive`, text: "download" }))));
      }
      table.append(tb);
      return s.status === "running" || s.status === "queued";
    };
    if (await fill()) NSML.live.add(NSML.poll(fill, 3000));
  },
};
