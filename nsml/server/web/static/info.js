/* The Info tab: command and arguments, editable memo, status history, exit code, and resource
   usage over time (CPU, memory, per-GPU utilisation and memory, each run's end sample) with the
   zombie-GPU flag. */
"use strict";
NSML.session.info = async function (box, name) {
  const url = `/api/web/sessions/${name}/info`;
  let info = await NSML.api(url);
  const s = info.session;
  const kv = (k, v) => NSML.el("tr", {}, NSML.el("th", { text: k }), NSML.el("td", {}, v));
  const exec = s.started ? NSML.fmt.duration((s.ended || Date.now() / 1000) - s.started) : "";
  const facts = NSML.el("table", { class: "kv" },
    kv("command", NSML.el("code", { text: s.command })),
    kv("arguments", NSML.el("span", {}, ...Object.entries(info.params).map(([k, v]) => NSML.el("code", { class: "chip", text: `${k}=${v}` })))),
    kv("status", NSML.el("span", {}, NSML.badge(s.status), s.exit_code !== null ? ` exit code ${s.exit_code}` : "")),
    s.error ? kv("error", NSML.el("pre", { class: "error", text: s.error })) : null,
    kv("exec. time", `${exec}${s.started ? ` (${NSML.fmt.time(s.started)} ~ ${s.ended ? NSML.fmt.time(s.ended) : "now"})` : ""}`),
    kv("resources", `${s.cpus} CPUs · ${NSML.fmt.bytes(s.memory)} memory · ${s.shm_size ? `${NSML.fmt.bytes(s.shm_size)} shared memory · ` : ""}${s.gpus} GPU${s.gpus === 1 ? "" : "s"}${s.gpu_ids ? ` (${s.gpu_ids})` : ""}`),
    s.node ? kv("node", s.node) : null,
    s.dataset === ".nodata" ? kv("dataset", "none (run without -d)") : null,
    s.image ? kv("image", s.image) : null,
    s.kind !== "normal" ? kv("relaunch", `${s.kind} of ${s.source} ${s.source_checkpoint}`) : null,
    kv("checkpoints", String(info.checkpoints)));
  const memo = NSML.el("textarea", { id: "memo", rows: 2, placeholder: "Describe this session…" });
  memo.value = s.memo;
  const save = NSML.el("button", { type: "button", id: "memo-save", text: "Save memo", onclick: async () => {
    try {
      await NSML.api(NSML.urls.api(name) + "/memo", { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ memo: memo.value }) });
      NSML.toast("Memo saved");
    } catch (e) { NSML.toast(e.message, true); }
  } });
  memo.onkeydown = (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) save.click(); };
  const events = NSML.el("table", { class: "grid" }, NSML.el("thead", {}, NSML.el("tr", {}, NSML.el("th", { text: "when" }), NSML.el("th", { text: "status" }), NSML.el("th", { text: "note" }))),
    NSML.el("tbody", {}, ...info.events.map((e) => NSML.el("tr", {}, NSML.el("td", { text: NSML.fmt.time(e.at) }), NSML.el("td", {}, NSML.badge(e.status)), NSML.el("td", { class: "small", text: e.note })))));
  const zombie = NSML.el("div", { class: "zombie", hidden: !info.zombie.length });
  const charts = NSML.el("div", { class: "panels" });
  const note = NSML.el("div", { class: "note" });
  NSML.notes.editor(note, name);
  box.append(NSML.el("div", { class: "info-grid" },
    NSML.el("section", {}, NSML.el("h3", { text: "Session" }), facts, NSML.el("h3", { text: "Memo" }), memo, save,
      NSML.el("h3", { text: "Note" }), note),
    NSML.el("section", {}, NSML.el("h3", { text: "Status history" }), events)),
    NSML.el("h3", { text: "Resource usage" }), zombie, charts);

  /* The usage charts. A sample reads one moment (CPU: % of one core over the seconds since the
     previous sample; memory: resident bytes), except a run's end sample (`final`), which sums
     up the whole run: its CPU is the average over the run and its memory the peak of the run's
     largest process. It is drawn as a marker of its own, named so in the legend and tooltip,
     and never joined to the readings by a line (nor are two runs of a resumed session). */
  const MB = 2 ** 20, GB = 2 ** 30;
  const memUnit = (values) => (values.reduce((a, v) => (isFinite(v) && v > a ? v : a), 0) >= GB ? [GB, "GB"] : [MB, "MB"]);
  const local = (t) => t * 1000 - new Date().getTimezoneOffset() * 60000;
  // [readings, end samples]: the readings with a gap wherever a run ended between two of them.
  const split = (u, values) => {
    const read = { x: [], y: [] }, end = { x: [], y: [] };
    (u.at || []).forEach((t, i) => {
      const v = values[i] ?? null;
      if (u.final && u.final[i]) {
        end.x.push(local(t)); end.y.push(v);
        if (read.x.length) { read.x.push(local(t)); read.y.push(null); }
      } else { read.x.push(local(t)); read.y.push(v); }
    });
    return [read, end];
  };
  const draw = () => {
    zombie.hidden = !info.zombie.length;
    zombie.textContent = info.zombie.length ? `Zombie? GPU ${info.zombie.join(", ")} has been at 0% for over an hour while this session holds it.` : "";
    const u = info.usage;
    const [memScale, memName] = memUnit(u.memory || []);
    const [cpuRead, cpuEnd] = split(u, u.cpu || []);
    const [memRead, memEnd] = split(u, (u.memory || []).map((m) => (isFinite(m) && m !== null ? m / memScale : null)));
    // [title, y axis title, unit in the tooltip, readings, end samples, what an end sample means]
    const specs = [
      ["CPU", "% of one core", "% of one core", cpuRead, cpuEnd, "average over the run"],
      ["Memory", `${memName} resident`, memName, memRead, memEnd, "peak of its largest process"],
    ];
    for (const [index, g] of Object.entries(u.gpus)) {
      const gx = g.at.map(local);
      const [gScale, gName] = memUnit(g.memory.map((m) => m ?? 0));
      specs.push([`GPU ${index} utilisation`, "% utilisation", "%", { x: gx, y: g.util }, { x: [], y: [] }, ""]);
      specs.push([`GPU ${index} memory`, `${gName} in use`, gName, { x: gx, y: g.memory.map((m) => (m ?? 0) / gScale) }, { x: [], y: [] }, ""]);
    }
    if (!u.at.length) {
      NSML.clear(charts).append(NSML.el("div", { class: "pad muted", text: s.status === "running" || s.status === "queued"
        ? "No usage samples yet: the first is taken about a second after the session's process starts."
        : "No usage samples recorded for this session." }));
      return;
    }
    if (charts.children.length !== specs.length || !charts.querySelector(".panel")) {
      NSML.clear(charts);
      specs.forEach(() => charts.append(NSML.el("div", { class: "panel" })));
    }
    specs.forEach(([title, axisTitle, unit, read, end, meaning], i) => {
      const color = NSML.plots.color(i);
      const few = read.x.length < 30; // lone readings get a marker: a line of one point is not drawn
      const traces = [{ ...read, name: "sampled", mode: few ? "lines+markers" : "lines", line: { width: 1.5, color }, marker: { size: 5, color },
        hovertemplate: `%{x}: %{y:.4~g} ${unit}<extra></extra>` }];
      if (end.x.length) {
        traces.push({ ...end, name: `end of run (${meaning})`, mode: "markers", marker: { size: 9, symbol: "diamond", color, line: { width: 1, color: NSML.theme.color("--fg") } },
          hovertemplate: `end of run, %{x}: %{y:.4~g} ${unit}, ${meaning}<extra></extra>` });
      }
      const names = traces.length > 1 ? traces.map((t) => t.name) : [];
      // Usage is never negative: the axis starts at 0, and a flat line (0 MB) gets [0, 1], not [-0.5, 0.5].
      const flat = NSML.plots.flatRange([...read.y, ...end.y]);
      const rows = NSML.plots.rowsFor(names, charts.children[i].clientWidth || 400);
      const layout = NSML.plots.layout(title, { type: "date", revision: "usage", x: "time", y: axisTitle, zero: true,
        yrange: flat && [0, Math.max(1, flat[1])], legend: rows });
      if (rows) { // at the bottom, below the two-line date ticks and the axis title rather than over them
        layout.legend = { ...layout.legend, yref: "container", y: 0, yanchor: "bottom" };
        layout.margin = { ...layout.margin, b: layout.margin.b + 20 * rows };
      }
      charts.children[i].dataset.key = `${s.name} ${title}`;
      charts.children[i].style.height = `${layout.height}px`; // the panel's CSS height has no room for a legend
      Plotly.react(charts.children[i], traces, layout, NSML.plots.configFor(`${s.name} ${title}`));
    });
  };
  draw();
  if (s.status === "running" || s.status === "queued") {
    NSML.live.add(NSML.poll(async () => { info = await NSML.api(url); draw(); return info.session.status === "running" || info.session.status === "queued"; }, 5000));
  }
};
