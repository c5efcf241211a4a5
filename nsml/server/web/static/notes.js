/* A session's markdown note (PUT/GET …/note), the longer companion of its one-line memo: shown
   rendered, edited as text. The renderer knows a small subset of markdown (headings, lists,
   quotes, code blocks, inline code, bold, italic, links) and builds DOM nodes from text, never
   HTML, so a note cannot inject markup or script into whoever reads it; a link goes only to
   http(s) or a path on this server. */
"use strict";
NSML.notes = {
  render(md) {
    const out = document.createDocumentFragment();
    const lines = String(md || "").replace(/\r\n?/g, "\n").split("\n");
    let list = null, para = [];
    const flush = () => {
      if (para.length) out.append(NSML.el("p", {}, ...NSML.notes.inline(para.join(" "))));
      para = [];
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (/^```/.test(line)) { // a fenced code block, kept as typed
        flush(); list = null;
        const body = [];
        for (i++; i < lines.length && !/^```/.test(lines[i]); i++) body.push(lines[i]);
        out.append(NSML.el("pre", {}, NSML.el("code", { text: body.join("\n") })));
        continue;
      }
      const heading = /^(#{1,4})\s+(.*)$/.exec(line);
      const item = /^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/.exec(line);
      if (heading) {
        flush(); list = null;
        out.append(NSML.el(`h${Math.min(6, heading[1].length + 3)}`, {}, ...NSML.notes.inline(heading[2])));
      } else if (item) {
        flush();
        const tag = item[1] ? "ol" : "ul";
        if (!list || list.tagName.toLowerCase() !== tag) { list = NSML.el(tag); out.append(list); }
        list.append(NSML.el("li", {}, ...NSML.notes.inline(item[2])));
      } else if (/^>\s?/.test(line)) {
        flush(); list = null;
        out.append(NSML.el("blockquote", {}, ...NSML.notes.inline(line.replace(/^>\s?/, ""))));
      } else if (!line.trim()) {
        flush(); list = null;
      } else {
        list = null;
        para.push(line.trim());
      }
    }
    flush();
    return out;
  },

  /* `code`, **bold**, *italic* or _italic_, [text](url): nodes, left to right. */
  inline(text) {
    const nodes = [];
    const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|(?:\*([^*]+)\*|_([^_]+)_)|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let at = 0, m;
    while ((m = pattern.exec(text))) {
      if (m.index > at) nodes.push(document.createTextNode(text.slice(at, m.index)));
      if (m[1] !== undefined) nodes.push(NSML.el("code", { text: m[1] }));
      else if (m[2] !== undefined) nodes.push(NSML.el("strong", { text: m[2] }));
      else if (m[3] !== undefined || m[4] !== undefined) nodes.push(NSML.el("em", { text: m[3] ?? m[4] }));
      else nodes.push(NSML.notes.safeHref(m[6]) ? NSML.el("a", { href: m[6], text: m[5], rel: "noopener noreferrer" }) : document.createTextNode(m[0]));
      at = pattern.lastIndex;
    }
    if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
    return nodes;
  },

  safeHref(url) {
    return /^https?:\/\//i.test(url) || (/^\/(?!\/)/.test(url) && !/[\\]/.test(url));
  },

  /* The note under the memo: rendered, with Edit; editing shows the text, Save and Cancel. */
  async editor(box, name, canEdit = true) {
    const url = NSML.urls.api(name) + "/note";
    let note = "";
    try { note = (await NSML.api(url)).note; } catch (e) { box.append(NSML.el("div", { class: "muted", text: e.message })); return; }
    const view = NSML.el("div", { class: "note-view", id: "note-view" });
    const text = NSML.el("textarea", { id: "note", rows: 8, hidden: true, placeholder: "A markdown note: what you tried, what you saw, what to do next…" });
    const edit = NSML.el("button", { type: "button", id: "note-edit", text: "Edit note", hidden: !canEdit });
    const save = NSML.el("button", { type: "button", id: "note-save", text: "Save note", hidden: true });
    const cancel = NSML.el("button", { type: "button", id: "note-cancel", text: "Cancel", hidden: true });
    const show = (editing) => {
      view.hidden = editing; text.hidden = !editing; save.hidden = !editing; cancel.hidden = !editing; edit.hidden = editing || !canEdit;
      if (!editing) {
        NSML.clear(view);
        view.append(note ? NSML.notes.render(note) : NSML.el("div", { class: "muted", text: "No note yet." }));
      }
    };
    edit.onclick = () => { text.value = note; show(true); text.focus(); };
    cancel.onclick = () => show(false);
    save.onclick = async () => {
      try {
        note = (await NSML.api(url, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ note: text.value }) })).note;
        show(false);
        NSML.toast("Note saved");
      } catch (e) { NSML.toast(e.message, true); }
    };
    text.onkeydown = (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) save.click(); else if (e.key === "Escape") cancel.click(); };
    box.append(view, text, NSML.el("div", { class: "controls" }, edit, save, cancel));
    show(false);
  },
};
