"""The resources page and the sessions list's scheduler details, in a real Chromium against a
real server on a declared inventory (two nodes, six GPUs that are not there; docs/web.md).

Sessions hold GPUs until their gate file appears (conftest.open_gate), more are started than
fit, so some queue: the page must show each node with its holders on the right GPU tiles, the
utilisation fed through the inventory's feed, and the queue with the scheduler's reasons; the
sessions list a queued session's place and reason and a running one's zombie marker. What a
session reserved and what it uses (its latest usage sample) are told apart in the API and on
the page, with sensible words where no sample exists; a run of a second has its start and end
samples on its Info tab. Every wait is for a condition (Playwright's own, or a deadline loop),
never a sleep before an assert.
"""

import json
import re

import pytest

from tests.conftest import (
    Cli, Server, clean_env, kill_leftover_supervisors, open_gate, start_session, wait_for, write_project,
)

pytestmark = pytest.mark.timeout(150)

NODES = """\
nodes:
  - {name: gpu-a, cpus: 8, memory: 16G, gpus: {count: 4, model: NVIDIA A100-SXM4-80GB, memory: 80G}}
  - {name: gpu-b, cpus: 8, memory: 16G, gpus: {count: 2, model: NVIDIA H100 80GB HBM3, memory: 80G}}
utilisation: feed.jsonl
"""
HOLD = """\
import os, time
print("holding", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
while not os.path.exists("gate"):
    time.sleep(0.05)
"""
SMALL = ("-c", "0.5", "--memory", "256M")
ZOMBIE_AFTER = 8  # seconds at 0 % before a held GPU flags its session (samples every 5 s)
SHORT = """\
import time
blob = bytearray(24 << 20)
for i in range(0, len(blob), 4096):
    blob[i] = 1
time.sleep(1)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """This module's own server (it replaces conftest's for the `page` fixture), on the
    declared inventory, sessions sandboxed as usual."""
    folder = tmp_path_factory.mktemp("resources")
    (folder / "nodes.yaml").write_text(NODES)
    (folder / "feed.jsonl").write_text("")
    server = Server(folder / "home", extra=["--inventory", str(folder / "nodes.yaml")],
                    env={"NSML_ZOMBIE_AFTER": str(ZOMBIE_AFTER)}).start()
    server.feed = folder / "feed.jsonl"
    yield server
    server.stop()
    kill_leftover_supervisors(server.home)


@pytest.fixture(scope="module")
def held(srv, tmp_path_factory):
    """Three sessions holding all six GPUs and two queued behind them; all ended afterwards."""
    cli = Cli(clean_env(srv.home), write_project(tmp_path_factory.mktemp("resources-work") / "code", HOLD))
    three = start_session(cli, "-g", "3", *SMALL)  # only gpu-a has 3
    pair = start_session(cli, "-g", "2", "--gpu-model", "H100", *SMALL)  # gpu-b
    one = start_session(cli, "-g", "1", *SMALL)  # gpu-a's last one
    running = [three, pair, one]
    for name in running:
        wait_for(lambda: srv.session(name)["status"] == "running", f"{name} to run")
    queued = [start_session(cli, "-g", "2", *SMALL), start_session(cli, "-g", "4", *SMALL)]
    try:
        yield {"three": three, "pair": pair, "one": one, "queued": queued}
    finally:
        for name in queued:  # first, so that none of them starts once GPUs are freed
            srv.api.post(f"/api/sessions/{name}/stop")
        for name in queued:
            srv.wait(name)
        for name in running:
            if srv.session(name)["status"] == "running":
                open_gate(srv, name)
        for name in running:
            srv.wait(name)


def feed(srv: Server, node: str, gpu: int, util: float, memory_used: int) -> None:
    with open(srv.feed, "a") as f:
        f.write(json.dumps({"node": node, "gpu": gpu, "util": util, "memory_used": memory_used}) + "\n")


def gpu_ids(s: dict) -> list[int]:
    return [int(g) for g in s["gpu_ids"].split(",") if g.strip()]


def test_a_one_second_run_has_its_start_and_end_samples_on_its_info_tab(srv, page, tmp_path_factory):
    """First in this module, before `held` takes every GPU: a run of a second (the default
    one GPU, half a CPU)."""
    cli = Cli(clean_env(srv.home), write_project(tmp_path_factory.mktemp("resources-short") / "code", SHORT))
    name = start_session(cli, *SMALL)
    ended = srv.wait(name)
    assert ended["status"] == "exited", ended
    usage = srv.api.get(f"/api/web/sessions/{name}/info").json()["usage"]
    assert len(usage["at"]) >= 2 and usage["final"][-1] and not usage["final"][0], usage

    page.goto(f"{srv.url}/sessions/{name}?tab=info")
    memory = "#main .panel[data-key$='Memory']"
    page.wait_for_function(f"() => document.querySelector(\"{memory}\")?._fullLayout?.yaxis")
    # Some tens of MB: in MB, not 0.02 GB; the axis says what the figure is.
    assert page.locator(f"{memory} .g-ytitle").text_content() == "MB resident"
    assert page.locator("#main .panel[data-key$='CPU'] .g-ytitle").text_content() == "% of one core"
    # The end sample is a marker of its own, its meaning in the legend (and its tooltip).
    legend = page.locator(f"{memory} .legendtext").all_text_contents()
    assert legend == ["sampled", "end of run (peak of its largest process)"], legend
    assert page.locator("#main .panel[data-key$='CPU'] .legendtext").all_text_contents()[-1] == "end of run (average over the run)"
    traces = page.evaluate(f"document.querySelector(\"{memory}\").data.map(t => [t.name, t.y.length, t.mode])")
    assert traces[1] == ["end of run (peak of its largest process)", 1, "markers"], traces
    peak = page.evaluate(f"document.querySelector(\"{memory}\").data[1].y[0]")
    assert peak == pytest.approx(usage["memory"][-1] / 2 ** 20) and peak > 24
    assert "NaN" not in page.locator("#main").inner_text()
    page.locator("#main .panels").screenshot(path=str(srv.home.parent / "info-short-run.png"))


def in_use_everywhere(srv: Server, names: list[str]) -> dict:
    """The resources API's answer once every one of `names` has a usage sample (the sampler
    takes one about a second after a session starts, then every 5 s)."""
    def ready():
        r = srv.api.get("/api/resources").json()
        uses = {h["session"]: h["in_use"] for h in r["holders"]}
        return r if all(uses.get(n) for n in names) else None
    return wait_for(ready, "a usage sample of every running session", timeout=40, every=0.5)


def test_the_resources_page_shows_nodes_gpu_holders_utilisation_and_the_queue(srv, page, held):
    sessions = {name: srv.session(name) for name in (held["three"], held["pair"], held["one"])}
    pair = sessions[held["pair"]]
    assert pair["node"] == "gpu-b" and gpu_ids(pair) == [0, 1]
    feed(srv, "gpu-b", 0, 71, 8 << 30)  # the pair's first GPU: busy, 8 GB in use

    page.goto(f"{srv.url}/resources")
    nodes = page.locator("section.node")
    nodes.first.wait_for()
    assert [nodes.nth(i).get_attribute("data-node") for i in range(nodes.count())] == ["gpu-a", "gpu-b"]
    groups = page.locator(".node-group .group-title")
    assert groups.nth(0).inner_text().startswith("NVIDIA A100-SXM4-80GB") and "0 of 4 GPUs free" in groups.nth(0).inner_text()
    assert groups.nth(1).inner_text().startswith("NVIDIA H100 80GB HBM3")
    # Every GPU's tile names its holder, the one the scheduler gave it (the session's node and ids).
    owner_of = {(s["node"], g): name for name, s in sessions.items() for g in gpu_ids(s)}
    assert len(owner_of) == 6
    for (node, index), name in owner_of.items():
        tile = page.locator(f"section.node[data-node='{node}'] .gpu[data-index='{index}']")
        assert tile.get_attribute("data-holder") == name
        assert tile.get_attribute("href") == f"/sessions/{name}"
        assert name in tile.inner_text() and "80 GB" in tile.inner_text()
    assert "A100" in page.locator("section.node[data-node='gpu-a'] .gpu").first.inner_text()
    assert "0 of 2 GPUs free" in page.locator("section.node[data-node='gpu-b'] .node-head").inner_text()
    assert "CPU 0.5 / 8" in page.locator("section.node[data-node='gpu-b'] .node-bars").inner_text()
    # The feed's reading reaches the tile (the usage sampler reads it every 5 s, the page polls).
    busy = page.locator("section.node[data-node='gpu-b'] .gpu[data-index='0']")
    busy.locator(".gpu-util", has_text="71 %").wait_for()
    assert "8 / 80 GB" in busy.inner_text()

    # The queue, in the scheduler's order, with its reasons.
    api_queue = srv.api.get("/api/resources").json()["queue"]
    assert [q["session"] for q in api_queue] == held["queued"]
    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 2
    for i, q in enumerate(api_queue):
        cells = rows.nth(i).locator("td")
        assert cells.nth(0).inner_text() == str(i + 1)
        assert cells.nth(1).inner_text() == q["session"]
        assert cells.nth(1).locator("a").get_attribute("href") == f"/sessions/{q['session']}"
        assert cells.nth(3).inner_text().startswith(f"{q['gpus']} GPUs")
        assert cells.nth(6).inner_text() == q["reason"]
    assert api_queue[0]["reason"].startswith("waiting for 2 GPUs on one node (at most 0 free); 0 ahead of you")
    assert api_queue[1]["reason"].startswith("waiting for 4 GPUs on one node (at most 0 free); 1 ahead of you")
    assert page.locator("table.holders tbody tr").count() == 3

    # Views: compact tiles keep their holders; the node filter is part of the address.
    page.get_by_role("button", name="Compact").click()
    page.locator(".nodes.compact").first.wait_for()
    assert page.locator(f".nodes.compact .gpu[data-holder='{held['pair']}']").count() == 2
    page.fill("#node-filter", "h100")
    page.wait_for_function("() => document.querySelectorAll('section.node').length === 1")
    assert page.locator("section.node").get_attribute("data-node") == "gpu-b"
    assert "view=compact" in page.url and "node=h100" in page.url
    page.screenshot(path=str(srv.home.parent / "resources.png"), full_page=True)


def test_reserved_and_in_use_are_told_apart_per_session_per_node_and_in_total(srv, page, held):
    running = [held["three"], held["pair"], held["one"]]
    r = in_use_everywhere(srv, running)
    # The API: a request is a reservation (`reserved`, and `used` its older name); `in_use` is sampled.
    assert r["reserved"] == r["used"] == {"cpus": 1.5, "memory": 3 * (256 << 20), "gpus": 6}
    assert r["in_use"]["sessions"] == r["in_use"]["sampled"] == 3
    for h in r["holders"]:
        assert (h["cpus"], h["memory"]) == (0.5, 256 << 20)  # what it asked for, as before
        use = h["in_use"]
        assert 0 <= use["cpus"] < 2 and 0 < use["memory"] < 256 << 20  # a waiting script: a little CPU, some MB
        assert use["at"] >= h["started"]
    assert r["in_use"]["memory"] == sum(h["in_use"]["memory"] for h in r["holders"])
    for n in r["nodes"]:
        mine = [h for h in r["holders"] if h["node"] == n["name"]]
        assert n["reserved"] == n["used"] and n["reserved"]["cpus"] == 0.5 * len(mine)
        assert n["in_use"]["sessions"] == n["in_use"]["sampled"] == len(mine)
        assert n["in_use"]["memory"] == sum(h["in_use"]["memory"] for h in mine)
    assert sum(o["in_use"]["sessions"] for o in r["owners"]) == 3 and r["owners"][0]["cpus"] == 1.5

    # The page: every figure says which it is.
    page.goto(f"{srv.url}/resources")
    rows = page.locator("table.holders tbody tr")
    rows.first.wait_for()
    for name in running:
        row = page.locator(f"table.holders tr[data-holder='{name}']")
        assert re.fullmatch(r"0\.5 reserved · (< 0\.01|\d+(\.\d+)?) in use", row.locator("td.cpus").inner_text()), row.inner_text()
        assert re.fullmatch(r"256\.0 MB reserved · [\d.]+ (KB|MB) in use", row.locator("td.memory").inner_text()), row.inner_text()
    pair = page.locator(f"table.holders tr[data-holder='{held['pair']}'] td").nth(3)
    wait_for(lambda: "0 (71 %, 8.00 GB)" in pair.inner_text(), "the fed GPU reading in the pair's row", timeout=20)
    meters = page.locator(".meters .meter")
    assert re.search(r"^CPUs 1\.5 of 16 reserved · (< 0\.01|\d+(\.\d+)?) in use$", meters.nth(0).inner_text())
    assert re.search(r"^Memory 768\.0 MB of 32\.0 GB reserved · [\d.]+ MB in use$", meters.nth(1).inner_text())
    assert meters.nth(2).inner_text() == "GPUs 6 of 6 reserved"
    bars = page.locator("section.node[data-node='gpu-b'] .node-bars").inner_text()
    assert "CPU 0.5 / 8 reserved" in bars and re.search(r"Mem [\d.]+ / 16 GB reserved", bars) and bars.count(" in use") == 2
    owners = page.locator("table.owners tbody tr").first.inner_text()
    assert "1.5 reserved · " in owners and "768.0 MB reserved · " in owners
    assert "NaN" not in page.locator("#resources").inner_text() and "undefined" not in page.locator("#resources").inner_text()
    page.screenshot(path=str(srv.home.parent / "resources-in-use.png"), full_page=True)


def test_without_usage_samples_the_page_says_so_rather_than_a_figure(srv, page, held):
    """No sample yet (a session that just started): the server's real answer with its `in_use`
    figures taken out (a stand-in, named as such), as it is in the first second of a session."""
    def unsampled(route):
        r = route.fetch().json()
        for h in r["holders"]:
            h["in_use"] = None
        for part in [r, *r["nodes"], *r["owners"]]:
            part["in_use"] = {**part["in_use"], "cpus": 0, "memory": 0, "sampled": 0}
        r["owners"][0].pop("in_use")  # and an answer without the field at all (an older server)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(r))

    page.route("**/api/resources", unsampled)
    page.goto(f"{srv.url}/resources")
    page.locator("table.holders tbody tr").first.wait_for()
    cells = page.locator("table.holders td.cpus").all_inner_texts() + page.locator("table.holders td.memory").all_inner_texts()
    assert len(cells) == 6 and all(c.endswith("reserved · in use: no sample yet") for c in cells), cells
    assert page.locator(".meters .meter").nth(0).inner_text() == "CPUs 1.5 of 16 reserved · in use: no samples yet"
    assert page.locator(".meters .meter .in-use").count() == 0  # no band drawn for a figure not known
    assert "in use: no samples yet" in page.locator("section.node[data-node='gpu-a'] .node-bars").inner_text()
    assert page.locator("table.owners td.cpus").first.inner_text() == "1.5 reserved · in use: no sample yet"
    text = page.locator("#resources").inner_text()
    assert "NaN" not in text and "undefined" not in text


def test_the_sessions_list_shows_queue_reasons_and_zombie_gpus(srv, page, held):
    first = held["queued"][0]
    reason = srv.session(first)["queue_reason"]
    assert reason.startswith("waiting for 2 GPUs on one node")
    page.goto(f"{srv.url}/")
    note = page.locator(f"tr[data-session='{first}'] .queue-note")
    note.wait_for()
    assert note.inner_text() == f"#1 in queue · {reason}"
    assert page.locator(f"tr[data-session='{first}'] .badge.st-queued").get_attribute("title") == note.inner_text()
    assert "#2 in queue" in page.locator(f"tr[data-session='{held['queued'][1]}'] .queue-note").inner_text()

    # A held GPU fed 0 % for longer than the threshold flags its session as a possible zombie.
    idle = srv.session(held["one"])
    feed(srv, idle["node"], gpu_ids(idle)[0], 0, 1 << 30)
    wait_for(lambda: srv.session(held["one"])["zombie"] == gpu_ids(idle), "the zombie flag", timeout=ZOMBIE_AFTER + 40)

    def marked() -> bool:  # the list does not poll: reload until the flag is in the list's answer too
        page.goto(f"{srv.url}/")
        page.locator(f"tr[data-session='{first}']").wait_for()
        return page.locator(f"tr[data-session='{held['one']}'] .zombie-mark").count() == 1

    wait_for(marked, "the zombie marker", timeout=30)
    mark = page.locator(f"tr[data-session='{held['one']}'] .zombie-mark")
    assert f"GPU {gpu_ids(idle)[0]} has been at 0 %" in mark.get_attribute("title")
    assert page.locator(f"tr[data-session='{held['three']}'] .zombie-mark").count() == 0
    page.goto(f"{srv.url}/resources")
    page.locator(f"section.node[data-node='{idle['node']}'] .gpu.idle[data-holder='{held['one']}']").wait_for()


def test_lost_and_paused_sessions_have_their_own_badges(srv, page, held):
    """Both need a dead supervisor or nsml.paused(); the list's drawing of them is checked on
    the server's real answer with two statuses swapped in."""
    lost, paused = held["three"], held["pair"]

    def swap(route):
        response = route.fetch()
        data = response.json()
        for s in data.get("rows", []):
            s["status"] = {lost: "lost", paused: "paused"}.get(s["name"], s["status"])
        route.fulfill(response=response, json=data)

    page.route("**/api/runs?*", swap)
    page.goto(f"{srv.url}/")
    badge = page.locator(f"tr[data-session='{lost}'] .badge.st-lost")
    badge.wait_for()
    assert "nsml resume" in badge.get_attribute("title")
    assert page.locator(f"tr[data-session='{paused}'] .badge.st-paused").inner_text() == "paused"
    colours = page.evaluate("""() => ['lost', 'paused', 'running'].map(st => getComputedStyle(
        document.querySelector(`.badge.st-${st}`)).backgroundColor)""")
    assert len(set(colours)) == 3, colours
    assert page.locator("label.chk", has_text="lost").count() == 1  # a status filter for each


def test_fair_share_standing_usage_and_credits_are_on_the_page(srv, page, held):
    """alice holds all six GPUs: her standing says so (share 100 % of the GPUs, 2 queued); her
    week of GPU-hours includes today (the one-second run and these); this server has no credit
    rules, and says so."""
    r = srv.api.get("/api/resources").json()
    mine = next(s for s in r["standing"] if s["holder"] == "alice")
    assert (mine["gpus"], mine["queued"], mine["weight"], mine["max_gpus"]) == (6, 2, 1.0, None) and mine["share"] == 1.0
    assert r["policy"] == {"order": "fair", "credits": False}
    page.goto(f"{srv.url}/resources")
    row = page.locator("table.standing tr[data-holder='alice']")
    row.wait_for()
    assert [c.strip() for c in row.locator("td").all_inner_texts()] == ["alice", "100.0 %", "1", "6", "2"]
    usage = page.locator("table.usage tr[data-holder='alice'] td")
    usage.first.wait_for()
    today = usage.nth(7).inner_text()  # holder, 6 earlier days, today, total
    assert today != "·" and float(today) > 0 and float(usage.nth(8).inner_text()) >= float(today)
    assert "Credits: off (this server does not limit GPU time)" in page.inner_text("#main")
