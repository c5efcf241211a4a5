/* Sharing the GPUs, on the Resources page: each user's and team's fair-share standing (from
   /api/resources' `standing`), and the caller's GPU-hours by day and credits (/api/usage,
   /api/credit: the JSON twins of nsml usage and nsml credit). docs/scheduler.md. */
"use strict";
NSML.sharing = {
  /* Lowest share first: the holder the scheduler serves next within a priority. */
  standing(r) {
    const rows = (r.standing || []).map((s) => NSML.el("tr", { dataset: { holder: s.holder } },
      NSML.el("td", { text: s.holder.startsWith("team:") ? `team ${s.holder.slice(5)}` : s.holder }),
      NSML.el("td", { class: "num", title: "weighted dominant share: the largest of its fractions of the GPUs, CPUs and memory it holds, over its weight",
        text: `${(100 * s.share).toFixed(1)} %` }),
      NSML.el("td", { class: "num", text: NSML.fmt.num(s.weight) }),
      NSML.el("td", { class: "num", text: s.max_gpus === null ? String(s.gpus) : `${s.gpus} of ${s.max_gpus}` }),
      NSML.el("td", { class: "num", text: String(s.queued) })));
    const order = r.policy?.order || "fair";
    return [NSML.el("h3", { id: "fair-share", text: "Fair share" }),
      NSML.el("p", { class: "small muted", text: order === "fair"
        ? "Within a priority the queue serves the team, then the user, with the lowest share first; a session is charged to its team."
        : `This server orders its queue by ${order === "fifo" ? "arrival alone" : "priority, then arrival"} (its policy file).` }),
      NSML.el("table", { class: "grid standing" },
        NSML.el("thead", {}, NSML.el("tr", {}, ...["holder", "share", "weight", "GPUs (of quota)", "queued"].map((h) => NSML.el("th", { text: h })))),
        NSML.el("tbody", {}, ...(rows.length ? rows : [NSML.el("tr", {}, NSML.el("td", { colspan: 5, class: "muted", text: "Nobody holds or waits for anything." }))])))];
  },

  /* The caller's (and their teams') GPU-hours over the last week and credits. */
  async usage(box) {
    const [u, c] = await Promise.all([NSML.api("/api/usage?days=7"), NSML.api("/api/credit")]);
    NSML.clear(box);
    const days = u.days.map((d) => d.slice(5));
    const head = NSML.el("tr", {}, NSML.el("th", { text: "holder" }), ...days.map((d) => NSML.el("th", { class: "num", text: d })), NSML.el("th", { class: "num", text: "7 days" }));
    const body = u.rows.map((row) => NSML.el("tr", { dataset: { holder: row.holder } }, NSML.el("td", { text: row.holder }),
      ...row.hours.map((h) => NSML.el("td", { class: "num" + (h ? "" : " muted"), text: h ? h.toFixed(h < 10 ? 2 : 1) : "·" })),
      NSML.el("td", { class: "num", text: row.total.toFixed(2) })));
    box.append(NSML.el("h3", { id: "usage", text: "Your GPU-hours" }),
      NSML.el("table", { class: "grid usage" }, NSML.el("thead", {}, head),
        NSML.el("tbody", {}, ...(body.length ? body : [NSML.el("tr", {}, NSML.el("td", { colspan: days.length + 2, class: "muted", text: "No GPU time used this week." }))]))));
    const credit = c.enabled
      ? NSML.el("table", { class: "grid credits" }, NSML.el("thead", {}, NSML.el("tr", {}, ...["holder", "credits left", "cap", "refill", "held by running sessions"].map((h) => NSML.el("th", { text: h })))),
        NSML.el("tbody", {}, ...c.balances.map((b) => NSML.el("tr", { dataset: { holder: b.holder } }, NSML.el("td", { text: b.holder }),
          NSML.el("td", { class: "num" + (b.credit <= 0 ? " bad" : ""), text: NSML.fmt.num(b.credit) }), NSML.el("td", { class: "num", text: NSML.fmt.num(b.cap) }),
          NSML.el("td", { class: "num", text: `+${NSML.fmt.num(b.refill)} each ${NSML.fmt.duration(c.period)}` }), NSML.el("td", { class: "num", text: NSML.fmt.num(b.committed) })))))
      : NSML.el("p", { class: "small muted", text: `Credits: off (${c.message}).` });
    box.append(NSML.el("h3", { id: "credits", text: "Credits" }), NSML.el("p", { class: "small muted", text: "1 credit = 1 GPU-minute; nsml credit shows the same." }), credit);
  },
};
