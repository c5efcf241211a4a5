/* The Info tab: command and arguments, editable memo, status history, exit code, and resource
   usage over time (CPU, memory, per-GPU utilisation and memory) with the zombie-GPU flag. */
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
  box.append(NSML.el("div", { class: "info-grid" },
    NSML.el("section", {}, NSML.el("h3", { text: "Session" }), facts, NSML.el("h3", { text: "Memo" }), memo, save),
    NSML.el("section", {}, NSML.el("h3", { text: "Status history" }), events)),
    NSML.el("h3", { text: "Resource usage" }), zombie, charts);

  const draw = () => {
    zombie.hidden = !info.zombie.length;
    zombie.textContent = info.zombie.length ? `Zombie? GPU ${info.zombie.join(", ")} has been at 0% for over an hour while this session holds it.` : "";
    const u = info.usage;
    const at = u.at.map((t) => t * 1000 - new Date().getTimezoneOffset() * 60000);
    const specs = [["CPU", "% of one core", [{ x: at, y: u.cpu, name: "cpu" }]], ["Memory", "GB", [{ x: at, y: u.memory.map((m) => m / 2 ** 30), name: "rss" }]]];
    for (const [index, g] of Object.entries(u.gpus)) {
      const gx = g.at.map((t) => t * 1000 - new Date().getTimezoneOffset() * 60000);
      specs.push([`GPU ${index} utilisation`, "%", [{ x: gx, y: g.util, name: `gpu${index}` }]]);
      specs.push([`GPU ${index} memory`, "GB", [{ x: gx, y: g.memory.map((m) => (m ?? 0) / 2 ** 30), name: `gpu${index}` }]]);
    }
    if (charts.children.length !== specs.length) {
      NSML.clear(charts);
      specs.forEach(() => charts.append(NSML.el("div", { class: "panel" })));
    }
    if (!u.at.length) {
      NSML.clear(charts).append(NSML.el("div", { class: "pad muted", text: "No usage samples recorded for this session." }));
      return;
    }
    specs.forEach(([title, unit, traces], i) => {
      // Usage is never negative: the axis starts at 0, and a flat line (0 GB) gets [0, 1], not [-0.5, 0.5].
      const flat = NSML.plots.flatRange(traces.flatMap((t) => t.y));
      const layout = NSML.plots.layout(title, { type: "date", revision: "usage", x: "time", y: unit, zero: true,
        yrange: flat && [0, Math.max(1, flat[1])] });
      charts.children[i].dataset.key = `${s.name} ${title}`;
      Plotly.react(charts.children[i], traces.map((t) => ({ ...t, mode: "lines", line: { width: 1.5, color: NSML.plots.color(i) },
        hovertemplate: `%{x}: %{y:.4~g} ${unit}<extra></extra>` })), layout, NSML.plots.configFor(`${s.name} ${title}`));
    });
  };
  draw();
  if (s.status === "running" || s.status === "queued") {
    NSML.live.add(NSML.poll(async () => { info = await NSML.api(url); draw(); return info.session.status === "running" || info.session.status === "queued"; }, 5000));
  }
};
