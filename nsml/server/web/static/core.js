/* Shared helpers: DOM building, API calls, view state in the URL, formatting, keys, themes. */
"use strict";
const NSML = (window.NSML = { pages: {} });

/* -- DOM ------------------------------------------------------------------------------- */
NSML.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};
NSML.clear = (node) => { while (node.firstChild) node.firstChild.remove(); return node; };

/* -- API: same-origin fetch; the login cookie authenticates ------------------------------ */
NSML.api = async function (path, opts = {}) {
  const resp = await fetch(path, { credentials: "same-origin", ...opts });
  if (resp.status === 401) { NSML.needLogin(); throw new Error("not logged in"); }
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const err = new Error((body && body.detail) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
};
NSML.needLogin = function () {
  const main = document.getElementById("main");
  NSML.clear(main).append(NSML.el("div", { class: "pad notice" },
    NSML.el("h2", { text: "Log in to this NSML server" }),
    NSML.el("p", {}, "Run ", NSML.el("code", { text: "nsml web" }),
      " in a terminal: it opens this dashboard with a login link for your account.")));
};
NSML.query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else if (v !== null && v !== undefined && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
};

/* -- URLs: one builder, so pages never assemble paths by hand ---------------------------- */
NSML.urls = {
  session: (name, params = {}) => `/sessions/${name}${NSML.query(params)}`,
  dataset: (name, params = {}) => `/datasets/${encodeURIComponent(name)}${NSML.query(params)}`,
  compare: (names, params = {}) => `/compare${NSML.query({ s: names, ...params })}`,
  diff: (a, b) => `/diff${NSML.query({ a, b })}`,
  home: (params = {}) => `/${NSML.query(params)}`,
  api: (name) => `/api/sessions/${name}`,
};

/* -- View state lives in the query string: a copied link reproduces the view ------------- */
NSML.state = {
  params: () => new URLSearchParams(location.search),
  get: (k, d = null) => NSML.state.params().get(k) ?? d,
  all: (k) => NSML.state.params().getAll(k),
  set(changes) {
    const q = NSML.state.params();
    for (const [k, v] of Object.entries(changes)) {
      q.delete(k);
      if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
      else if (v !== null && v !== undefined && v !== "" && v !== false) q.set(k, v === true ? "1" : v);
    }
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  },
};

/* -- Formatting ------------------------------------------------------------------------ */
NSML.fmt = {
  ago(t) {
    if (!t) return "";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 45) return "just now";
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  },
  time: (t) => (t ? new Date(t * 1000).toLocaleString() : ""),
  bytes(n) {
    if (n === null || n === undefined) return "";
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(n < 10 ? 2 : 1) : n} ${u[i]}`;
  },
  duration(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
  },
  num(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : String(+v.toPrecision(4));
  },
  summary(obj) {
    return Object.entries(obj || {}).map(([k, v]) => `${k}=${NSML.fmt.num(v)}`).join(", ");
  },
};

NSML.badge = (status) => NSML.el("span", { class: `badge st-${status}`, text: status });

NSML.toast = function (msg, bad = false) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = bad ? "show bad" : "show";
  clearTimeout(NSML.toast.timer);
  NSML.toast.timer = setTimeout(() => (t.className = ""), 3500);
};

/* Repeats fn every ms while the page is visible; returns a stop function. fn returning false stops. */
NSML.poll = function (fn, ms) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    let again = true;
    if (!document.hidden) {
      try { again = (await fn()) !== false; } catch (e) { console.warn(e); }
    }
    if (again && !stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
};
/* Pollers of the current view; replaced when the view changes (tabs). */
NSML.live = { stops: [], add(stop) { this.stops.push(stop); }, stopAll() { this.stops.splice(0).forEach((s) => s()); } };

NSML.tabs = function (names, current, onPick) {
  const bar = NSML.el("div", { class: "tabs", role: "tablist" });
  names.forEach(([id, label], i) => {
    bar.append(NSML.el("button", {
      type: "button", role: "tab", class: id === current ? "tab on" : "tab", "aria-selected": String(id === current),
      title: `${label} (${i + 1})`, dataset: { tab: id }, text: label,
      onclick: () => onPick(id),
    }));
  });
  return bar;
};

/* -- Theme and keyboard ---------------------------------------------------------------- */
NSML.theme = {
  toggle() {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem("nsml-theme", next);
    document.dispatchEvent(new Event("nsml-theme"));
  },
  color: (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim(),
};

NSML.typing = (e) => /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName) || e.target.isContentEditable;
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "Escape" && NSML.typing(e)) { e.target.blur(); return; }
  if (NSML.typing(e)) return;
  if (e.key === "/") { e.preventDefault(); document.getElementById("search").focus(); }
  else if (e.key === "t") NSML.theme.toggle();
  else if (/^[1-9]$/.test(e.key)) document.querySelectorAll(".tabs .tab")[+e.key - 1]?.click();
});
