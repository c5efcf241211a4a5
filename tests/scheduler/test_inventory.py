"""Declared inventories (nodes.yaml) and their utilisation feed; this machine's inventory."""

import json
import os

import pytest

from nsml.core.errors import InvalidInput
from nsml.core.inventory import GpuDevice, model_matches
from nsml.scheduler.inventory import UtilisationFeed, load_declared, this_machine

G = 1 << 30


def write(tmp_path, text: str, name: str = "nodes.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_declared_inventory_gives_nodes_with_gpus_and_a_feed(tmp_path):
    path = write(tmp_path, """
nodes:
  - name: gpu-a
    cpus: 32
    memory: 256G
    gpus: {count: 2, model: NVIDIA A100-SXM4-80GB, memory: 80G}
  - name: gpu-b
    cpus: 8.5
    memory: 64G
    gpus:
      - {model: NVIDIA H100 80GB HBM3, memory: 80G}
      - {index: 3, model: NVIDIA H100 80GB HBM3, memory: 80G}
  - {name: cpu-only, cpus: 64, memory: 512G}
utilisation: feed.jsonl
""")
    nodes, feed = load_declared(path)
    assert [n.name for n in nodes] == ["gpu-a", "gpu-b", "cpu-only"]
    assert nodes[0].gpus == (GpuDevice(0, "NVIDIA A100-SXM4-80GB", 80 * G), GpuDevice(1, "NVIDIA A100-SXM4-80GB", 80 * G))
    assert [g.index for g in nodes[1].gpus] == [0, 3] and nodes[1].cpus == 8.5 and nodes[2].gpus == ()
    assert nodes[0].capacity.gpus == 2 and nodes[2].memory == 512 * G
    assert feed == (tmp_path / "feed.jsonl").resolve()


def test_json_inventories_too(tmp_path):
    path = write(tmp_path, json.dumps({"nodes": [{"name": "n", "cpus": 4, "memory": 8 << 30, "gpus": {"count": 1}}]}), "nodes.json")
    nodes, feed = load_declared(path)
    assert nodes[0].memory == 8 * G and len(nodes[0].gpus) == 1 and feed is None


@pytest.mark.parametrize("text, message", [
    ("nodes: []", "must hold `nodes:`"),
    ("- a\n- b", "must hold `nodes:`"),
    ("nodes: [a]", "node 1: each node is a mapping"),
    ("nodes: [{name: a, cpus: 0, memory: 1G}]", "node 1 (a): `cpus` must be a number above 0"),
    ("nodes: [{name: a, cpus: 1}]", "node 1 (a): `memory` must be a size like 64G"),
    ("nodes: [{name: a, cpus: 1, memory: lots}]", "'lots' is not a size"),
    ("nodes: [{name: a, cpus: 1, memory: 1G, gpu: 3}]", "unknown field(s) gpu"),
    ("nodes: [{name: '', cpus: 1, memory: 1G}]", "`name` must be a non-empty name"),
    ("nodes: [{name: a/b, cpus: 1, memory: 1G}]", "without '/'"),
    ("nodes: [{name: a, cpus: 1, memory: 1G}, {name: a, cpus: 1, memory: 1G}]", "node name 'a' is used twice"),
    ("nodes: [{name: a, cpus: 1, memory: 1G, gpus: {count: -1}}]", "`gpus.count` must be a whole number"),
    ("nodes: [{name: a, cpus: 1, memory: 1G, gpus: [{index: 0}, {index: 0}]}]", "indices are distinct"),
    ("nodes: [{name: a, cpus: 1, memory: 1G, gpus: 4}]", "`gpus` is a mapping"),
    ("nodes: [{name: a, cpus: 1, memory: 1G}]\nutilisation: 3", "`utilisation` must be the path"),
    ("nodes: [{name: a, cpus: 1, memory: 1G", "is not valid YAML"),
])
def test_a_malformed_inventory_names_the_problem(tmp_path, text, message):
    with pytest.raises(InvalidInput) as caught:
        load_declared(write(tmp_path, text))
    assert message in str(caught.value) and "nodes.yaml" in str(caught.value)


def test_a_missing_inventory_file_says_so(tmp_path):
    with pytest.raises(InvalidInput, match="Cannot read the inventory"):
        load_declared(tmp_path / "absent.yaml")


def test_the_feed_gives_each_gpus_latest_reading_and_replays_by_time(tmp_path):
    path = tmp_path / "feed.jsonl"
    feed = UtilisationFeed(path, started=0.0)  # started long ago: every `at` has passed
    assert feed.read([0], "a") == []  # no file yet: no readings, no error
    path.write_text("\n".join([
        json.dumps({"node": "a", "gpu": 0, "util": 10, "memory_used": 5}),
        json.dumps({"node": "a", "gpu": 0, "util": 0, "memory_used": 7}),
        json.dumps({"node": "b", "gpu": 0, "util": 99}),
        "not json", json.dumps({"node": "a", "gpu": "x", "util": 1}),
        "",
    ]) + "\n")
    assert feed.read([0, 1], "a") == [{"index": 0, "util": 0.0, "memory": 7}]
    with open(path, "a") as f:  # a test drives it by appending
        f.write(json.dumps({"node": "a", "gpu": 1, "util": 55}) + "\n")
    os.utime(path, ns=(1, 1))  # whatever the clock's resolution: the file is re-read when it changed
    assert feed.read([0, 1], "a") == [{"index": 0, "util": 0.0, "memory": 7}, {"index": 1, "util": 55.0, "memory": 0}]
    replay = UtilisationFeed(path, started=float("inf"))  # nothing has happened yet in a replay...
    path.write_text(json.dumps({"node": "a", "gpu": 0, "util": 50, "at": 100}) + "\n")
    assert replay.read([0], "a") == []
    assert UtilisationFeed(path, started=0.0).read([0], "a") == [{"index": 0, "util": 50.0, "memory": 0}]


def test_this_machine_is_one_node_and_a_gpu_count_beyond_what_is_found_gives_bare_ids():
    [node] = this_machine(cpus=3, memory=5 * G, gpus=2)
    assert node.cpus == 3 and node.memory == 5 * G and [g.index for g in node.gpus] == [0, 1] and node.name
    [none] = this_machine(gpus=0)
    assert none.gpus == () and none.cpus >= 1


def test_gpu_models_match_by_any_part():
    assert model_matches("h100", "NVIDIA H100 80GB HBM3") and model_matches("", "anything")
    assert not model_matches("a100", "NVIDIA H100 80GB HBM3")
