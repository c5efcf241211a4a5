/* Pure helpers that turn series into Plotly traces: EMA smoothing, @std bands, mean ± sd. */
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

  /* Mean ± sd across sessions on a common grid, where at least two of them have data. */
  meanSd(lines, points = 200) {
    const usable = lines.filter((l) => l.x.length > 1);
    if (usable.length < 2) return null;
    const lo = Math.min(...usable.map((l) => l.x[0])), hi = Math.max(...usable.map((l) => l.x[l.x.length - 1]));
    if (!(hi > lo)) return null;
    const xs = [], mean = [], sd = [];
    for (let i = 0; i < points; i++) {
      const x = lo + ((hi - lo) * i) / (points - 1);
      const vals = usable.map((l) => this.at(l.x, l.y, x)).filter((v) => v !== null && isFinite(v));
      if (vals.length < 2) continue;
      const m = vals.reduce((a, b) => a + b, 0) / vals.length;
      const v = vals.reduce((a, b) => a + (b - m) * (b - m), 0) / (vals.length - 1);
      xs.push(x); mean.push(m); sd.push(Math.sqrt(v));
    }
    return xs.length ? { x: xs, mean, sd } : null;
  },

  /* The panel's metric groups: `train/loss` is in group "train"; keys without "/" in "". */
  group(key) {
    const k = key.replaceAll("__", "/");
    const i = k.indexOf("/");
    return i > 0 ? k.slice(0, i) : "";
  },

  layout(title, axis) {
    const fg = NSML.theme.color("--fg"), grid = NSML.theme.color("--grid"), muted = NSML.theme.color("--muted");
    return {
      title: { text: title, font: { size: 12, color: fg }, x: 0.01, xanchor: "left", y: 0.98 },
      margin: { l: 48, r: 10, t: 26, b: 30 }, height: 250, showlegend: false, hovermode: "closest",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: { size: 10, color: muted },
      // range: undefined, never null: Plotly.react throws on a null range it has to diff.
      xaxis: { gridcolor: grid, zeroline: false, type: axis.type, range: axis.range || undefined, autorange: !axis.range },
      yaxis: { gridcolor: grid, zeroline: false, type: axis.log ? "log" : "linear", autorange: true },
      uirevision: axis.revision, dragmode: "zoom",
      hoverlabel: { font: { size: 11 } },
    };
  },
  config: { responsive: true, displaylogo: false, scrollZoom: true, modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"] },
};
