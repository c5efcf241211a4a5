/* Pure helpers that turn series into Plotly traces: EMA smoothing, @std bands, mean ± sd, the y
   range of a constant series, the panel layout, and PNG / CSV export of any chart. */
"use strict";
NSML.plots = {
  palette: ["#2f6fdf", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#e67700", "#5c940d",
            "#a61e4d", "#1864ab", "#862e9c", "#d9480f", "#087f5b", "#495057"],
  color(i) { return this.palette[i % this.palette.length]; },
  alpha(hex, a) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
  },

  /* TensorBoard's smoothing: an exponential moving average, debiased so the first points are not
     pulled towards zero; a gap (null) stays a gap and does not poison what follows. */
  ema(ys, weight) {
    if (!weight) return ys;
    let last = 0, n = 0;
    return ys.map((y) => {
      if (y === null || !isFinite(y)) return y;
      last = last * weight + (1 - weight) * y;
      n += 1;
      return last / (weight === 1 ? 1 : 1 - Math.pow(weight, n));
    });
  },

  /* Linear interpolation of (xs, ys) at x; null outside the series' range. xs ascending. */
  at(xs, ys, x) {
    if (!xs.length || x < xs[0] || x > xs[xs.length - 1]) return null;
    let lo = 0, hi = xs.length - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] <= x) lo = mid; else hi = mid; }
    if (xs[hi] === xs[lo]) return ys[lo];
    if (ys[lo] === null || ys[hi] === null) return null;
    return ys[lo] + ((ys[hi] - ys[lo]) * (x - xs[lo])) / (xs[hi] - xs[lo]);
  },

  /* Two traces drawing a filled band between lower and upper (the first is invisible). */
  band(xs, lower, upper, color, meta) {
    const common = { x: xs, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, meta };
    return [
      { ...common, y: upper },
      { ...common, y: lower, fill: "tonexty", fillcolor: this.alpha(color, 0.16) },
    ];
  },

  /* `name@std` reported next to `name`: y ± std around the line, std taken at the line's xs. */
  stdBand(line, std, color, meta) {
    const sd = line.x.map((x) => this.at(std.x, std.y, x));
    const up = line.y.map((y, i) => (y === null || sd[i] === null ? null : y + sd[i]));
    const down = line.y.map((y, i) => (y === null || sd[i] === null ? null : y - sd[i]));
    return this.band(line.x, down, up, color, meta);
  },

  /* Mean ± sd across lines on a common grid: the union of their xs when it is small (sessions
     reporting the same steps keep their exact points), else `points` even steps. Points where
     fewer than `least` lines have data are left out; sd is null where only one has. */
  meanSd(lines, points = 200, least = 2) {
    const usable = lines.filter((l) => l.x.length > 0);
    if (usable.length < least) return null;
    const union = [...new Set(usable.flatMap((l) => Array.from(l.x)))].sort((a, b) => a - b);
    let grid = union;
    if (union.length > 2 * points) {
      const lo = union[0], hi = union[union.length - 1];
      grid = Array.from({ length: points }, (_, i) => lo + ((hi - lo) * i) / (points - 1));
    }
    const xs = [], mean = [], sd = [], n = [];
    for (const x of grid) {
      const vals = usable.map((l) => this.at(l.x, l.y, x)).filter((v) => v !== null && isFinite(v));
      if (vals.length < least) continue;
      const m = vals.reduce((a, b) => a + b, 0) / vals.length;
      const v = vals.length > 1 ? vals.reduce((a, b) => a + (b - m) * (b - m), 0) / (vals.length - 1) : null;
      xs.push(x); mean.push(m); sd.push(v === null ? null : Math.sqrt(v)); n.push(vals.length);
    }
    return xs.length ? { x: xs, mean, sd, n } : null;
  },

  /* A fixed y range where every value is the same (up to float noise, 1e-9 relative): Plotly
     would autorange [14.999999999999998, 15] and draw noise as a crash. null: let it autorange. */
  flatRange(ys, log = false) {
    let lo = Infinity, hi = -Infinity;
    for (const v of ys) if (v !== null && isFinite(v) && (!log || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (lo === Infinity || hi - lo > Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9) return null;
    if (log) { const m = Math.log10(hi), pad = Math.log10(1.1); return [m - pad, m + pad]; } // ±10 %, as linear
    const mid = (lo + hi) / 2, pad = mid === 0 ? 1 : Math.abs(mid) * 0.1;
    return [mid - pad, mid + pad];
  },

  /* A value as text for hovers and exports: what was stored, at most 7 significant digits. */
  num(v) { return v === null || v === undefined || !isFinite(v) ? "—" : String(+Number(v).toPrecision(7)); },

  /* `acc@vector:top1` → {base: "acc", kind: "vector", elem: "top1"}; `loss` → kind "line". */
  parseKey(key) {
    const m = /^(.*)@(std|vector|stack)(?::(.*))?$/.exec(key);
    return m ? { base: m[1], kind: m[2], elem: m[3] ?? "" } : { base: key, kind: key.includes("@") ? "other" : "line", elem: "" };
  },

  /* The panel's metric groups: `train/loss` is in group "train"; keys without "/" in "". */
  group(key) {
    const k = key.replaceAll("__", "/");
    const i = k.indexOf("/");
    return i > 0 ? k.slice(0, i) : "";
  },

  /* axis: {type, log, range, revision, x: x axis title, y: y axis title, yrange, zero (the
     quantity is never negative), legend: number of legend rows (0: none)}. */
  layout(title, axis) {
    const fg = NSML.theme.color("--fg"), grid = NSML.theme.color("--grid"), muted = NSML.theme.color("--muted");
    const rows = axis.legend || 0;
    const yaxis = { gridcolor: grid, zeroline: false, type: axis.log ? "log" : "linear", automargin: true,
      title: { text: axis.y || "", font: { size: 10 }, standoff: 4 }, tickformat: axis.log ? "~g" : undefined };
    if (axis.yrange) Object.assign(yaxis, { range: axis.yrange, autorange: false });
    else Object.assign(yaxis, { autorange: true, rangemode: axis.zero ? "tozero" : "normal" });
    return {
      title: { text: title, font: { size: 12, color: fg }, x: 0.01, xanchor: "left", y: 0.98, yanchor: "top" },
      margin: { l: 52, r: 10, t: 26, b: 36 }, height: this.height(rows), showlegend: rows > 0, hovermode: "closest",
      legend: { orientation: "h", x: 0, xanchor: "left", y: -0.2, yanchor: "top", yref: "paper", font: { size: 10 },
        maxheight: 20 * Math.min(rows, this.legendRows) + 8, traceorder: "normal" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { size: 10, color: muted },
      // range: undefined, never null: Plotly.react throws on a null range it has to diff.
      xaxis: { gridcolor: grid, zeroline: false, type: axis.type, range: axis.range || undefined, autorange: !axis.range,
        automargin: true, title: { text: axis.x || "", font: { size: 10 }, standoff: 2 } },
      yaxis, uirevision: axis.revision, dragmode: "zoom",
      hoverlabel: { font: { size: 11 } },
    };
  },
  legendRows: 5, // more scroll inside the legend
  height(rows) { return 250 + 20 * Math.min(rows, this.legendRows); },
  /* How many rows Plotly's horizontal legend takes for these names in a panel this wide. */
  rowsFor(names, width) {
    if (!names.length) return 0;
    let rows = 1, used = 0;
    for (const n of names) {
      const w = 46 + 6 * String(n).length;
      if (used && used + w > width - 20) { rows += 1; used = 0; }
      used += w;
    }
    return rows;
  },

  /* -- export ------------------------------------------------------------------------ */
  slug: (s) => String(s).replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "chart",
  csvField(v) {
    const t = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(t) ? `"${t.replaceAll('"', '""')}"` : t;
  },
  csv(rows) { return rows.map((r) => r.map((v) => this.csvField(v)).join(",")).join("\n") + "\n"; },
  save(filename, text, type = "text/csv") {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = NSML.el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  },
  /* The panel's own rows when its page set gd.nsmlCsv (the graph: raw values of the points
     shown), else every trace's x and y as drawn (the Info charts). */
  downloadCsv(gd) {
    const rows = gd.nsmlCsv ? gd.nsmlCsv() : [["trace", "x", "y"],
      ...(gd.data || []).filter((t) => t.hoverinfo !== "skip").flatMap((t) => Array.from(t.x || [], (x, i) => [t.name || "", x, t.y[i]]))];
    this.save(`${this.slug(gd.dataset.key || gd.layout?.title?.text)}.csv`, this.csv(rows));
  },
  csvIcon: { width: 24, height: 24, path: "M4 3h11l5 5v13H4zM14 4v5h5M7 12h10v1.6H7zm0 3.5h10v1.6H7zm0 3.5h7v1.6H7z" },
  /* Per panel: PNG through Plotly's own toImage button (Plotly.downloadImage), named after it. */
  configFor(name) {
    return { ...this.config, toImageButtonOptions: { format: "png", filename: this.slug(name), scale: 2 } };
  },
};
NSML.plots.config = {
  responsive: true, displaylogo: false, scrollZoom: true, modeBarButtonsToRemove: ["select2d", "lasso2d"],
  modeBarButtonsToAdd: [{ name: "csv", title: "Download the points shown as CSV (raw values)", icon: NSML.plots.csvIcon,
    click: (gd) => NSML.plots.downloadCsv(gd) }],
};
