"""Placement, admission and session states: pure functions of plain data."""

import pytest

from nsml.core.entities import Session
from nsml.core.errors import Forbidden, InsufficientResources, InvalidInput
from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import Resources, format_duration, format_size, parse_size
from nsml.core.states import (
    ACTIVE, FINAL, RESUMABLE, SUBMISSION_FINAL, Status, SubmissionStatus, can_move, can_move_submission, final_status,
)
from nsml.scheduler import admission
from nsml.scheduler.placement import place, queue_order

G = 1 << 30


def node(name: str = "n1", cpus: float = 16, memory: int = 64 * G, gpus: int = 0, model: str = "A100", ids=None) -> Node:
    return Node(name, cpus, memory, tuple(GpuDevice(i, model, 80 * G) for i in (ids if ids is not None else range(gpus))))


def session(id: int, cpus: float = 1, memory: int = G, gpus: int = 0, created: float | None = None,
            status: Status = Status.QUEUED, gpu_ids: str = "", owner: str = "alice", priority: int = 0,
            gpu_model: str = "", node: str = "") -> Session:
    return Session(id=id, owner=owner, dataset="d", number=id, entry="main.py", args="", status=status,
                   resources=Resources(cpus, memory, gpus), created=float(id if created is None else created),
                   gpu_ids=gpu_ids, priority=priority, gpu_model=gpu_model, node=node)


def running(id: int, gpu_ids: str = "", **kw) -> Session:
    gpus = len([g for g in gpu_ids.split(",") if g])
    return session(id, gpus=gpus, status=Status.RUNNING, gpu_ids=gpu_ids, **kw)


def placed(plan) -> list[tuple[int, tuple[int, ...]]]:
    return [(d.session.id, d.gpu_ids) for d in plan.starts]


def test_everything_that_fits_starts_oldest_first():
    queue = [session(3, created=30), session(1, created=10), session(2, created=20)]
    assert placed(place(queue, [], [node(cpus=8)])) == [(1, ()), (2, ()), (3, ())]


def test_nothing_to_do():
    assert place([], [], [node()]).starts == [] and place([], [running(1)], [node()]).waiting == []


def test_running_sessions_use_up_capacity():
    nodes = [node(cpus=2)]
    assert placed(place([session(2), session(3)], [running(1)], nodes)) == [(2, ())]
    assert place([session(3)], [running(1), running(2)], nodes).starts == []


def test_memory_is_a_limit_too():
    assert placed(place([session(1, memory=3 * G), session(2, memory=2 * G)], [], [node(memory=4 * G)])) == [(1, ())]


def test_backfill_lets_a_small_request_pass_a_large_waiting_one():
    queue = [session(2, cpus=4), session(3, cpus=1)]
    assert placed(place(queue, [running(1, cpus=2)], [node(cpus=4)])) == [(3, ())]


def test_same_creation_time_falls_back_to_id():
    queue = [session(5, created=1.0), session(4, created=1.0)]
    assert placed(place(queue, [], [node(cpus=1)])) == [(4, ())]


def test_gpus_are_handed_out_without_sharing():
    queue = [session(2, gpus=2), session(3, gpus=1), session(4, gpus=1)]
    plan = place(queue, [running(1, gpu_ids="1")], [node(gpus=4)])
    assert placed(plan) == [(2, (0, 2)), (3, (3,))]  # 4 waits: every GPU is taken
    assert [(w.session.id, w.position) for w in plan.waiting] == [(4, 1)]


def test_gpu_ids_need_not_start_at_zero():
    assert placed(place([session(1, gpus=2)], [], [node(ids=[4, 7])])) == [(1, (4, 7))]


def test_cpu_only_sessions_start_while_gpus_are_busy():
    assert placed(place([session(2, gpus=1), session(3)], [running(1, gpu_ids="0")], [node(gpus=1)])) == [(3, ())]


def test_a_session_runs_on_one_node_and_packs_the_fullest_that_fits():
    nodes = [node("a", gpus=8), node("b", gpus=8)]
    busy = [running(1, gpu_ids="0,1,2,3,4,5", node="b")]  # b has 2 left, a has 8
    plan = place([session(2, gpus=2), session(3, gpus=4), session(4, gpus=5)], busy, nodes)
    assert [(d.session.id, d.node, d.gpu_ids) for d in plan.starts] == [(2, "b", (6, 7)), (3, "a", (0, 1, 2, 3))]
    # 5 GPUs are free in all (a's 4 after session 3), never 5 on one node
    assert plan.waiting[0].reason.startswith("waiting for 5 GPUs on one node (at most 4 free)")


def test_sessions_without_a_node_recorded_are_on_the_first():
    plan = place([session(2, gpus=1)], [running(1, gpu_ids="0")], [node("a", gpus=1), node("b", gpus=1)])
    assert [(d.node, d.gpu_ids) for d in plan.starts] == [("b", (0,))]


def test_gpu_model_constrains_the_devices():
    nodes = [node("v", gpus=4, model="Tesla V100-SXM2-32GB"), node("h", gpus=2, model="NVIDIA H100 80GB HBM3")]
    plan = place([session(1, gpus=2, gpu_model="h100"), session(2, gpus=1, gpu_model="H100")], [], nodes)
    assert [(d.session.id, d.node) for d in plan.starts] == [(1, "h")]
    assert plan.waiting[0].reason.startswith("waiting for 1 H100 GPU on one node (at most 0 free)")


def test_priority_comes_before_arrival():
    queue = [session(1, created=1), session(2, created=2, priority=1), session(3, created=3, priority=-1)]
    assert [s.id for s in queue_order(queue)] == [2, 1, 3]
    plan = place(queue, [], [node(cpus=1)])
    assert placed(plan) == [(2, ())] and [(w.session.id, w.position) for w in plan.waiting] == [(1, 1), (3, 2)]


def test_waiting_sessions_get_their_position_and_who_holds_the_gpus():
    holders = [running(1, gpu_ids="0,1,2", owner="bob"), running(2, gpu_ids="3", owner="carol")]
    queue = [session(3, gpus=2), session(4, gpus=2), session(5, cpus=32)]
    plan = place(queue, holders, [node(gpus=4)])
    assert [w.reason for w in plan.waiting] == [
        "waiting for 2 GPUs on one node (at most 0 free); 0 ahead of you; bob holds 3, carol holds 1",
        "waiting for 2 GPUs on one node (at most 0 free); 1 ahead of you; bob holds 3, carol holds 1",
        "waiting for 32 CPUs (at most 14 free on a node); 2 ahead of you",
    ]
    assert place(queue, holders, [node(gpus=4)], explain=False).waiting == []


def test_a_request_split_across_nodes_says_so():
    nodes = [node("a", cpus=4, memory=4 * G), node("b", cpus=1, memory=32 * G)]
    plan = place([session(1, cpus=4, memory=8 * G)], [], nodes)
    assert plan.waiting[0].reason.startswith("waiting for 0 GPU, 4 CPU, 8.00 GB memory together on one node")


def test_a_large_queue_on_a_full_cluster_places_nothing_and_explains_everything():
    nodes = [node(f"n{i}", cpus=64, memory=512 * G, gpus=8) for i in range(64)]
    full = [running(i + 1, gpu_ids="0,1,2,3,4,5,6,7", node=f"n{i}") for i in range(64)]
    queue = [session(100 + i, gpus=1 + i % 4) for i in range(2000)]
    plan = place(queue, full, nodes)
    assert plan.starts == [] and [w.position for w in plan.waiting] == list(range(1, 2001))


# -- admission ------------------------------------------------------------------------------------
def test_requests_that_can_never_fit_are_refused_with_a_reason():
    nodes = [node("a", cpus=4, memory=16 * G)]
    admission.admit(Resources(4, 16 * G, 0), nodes)
    with pytest.raises(InsufficientResources, match=r"asks for 1 GPU\(s\) but the largest node has 0; .* -g 0"):
        admission.admit(Resources(1, G, 1), nodes)
    with pytest.raises(InsufficientResources, match="but the largest node has 0 GPU, 4 CPU, 16.00 GB memory"):
        admission.admit(Resources(5, G, 0), nodes)
    with pytest.raises(InsufficientResources, match="lower -c or --memory"):
        admission.admit(Resources(1, 17 * G, 0), nodes)
    with pytest.raises(InvalidInput, match="more than 0 CPUs"):
        admission.admit(Resources(0, G, 0), nodes)
    admission.admit(Resources(0, 0, 0), nodes, idle_ok=True)  # an infer session waiting for requests
    with pytest.raises(InvalidInput, match="cannot be negative"):
        admission.admit(Resources(1, G, -1), nodes)
    with pytest.raises(InvalidInput, match="more than 0 CPUs"):
        admission.admit(Resources(float("nan"), G, 0), nodes)


def test_admission_looks_for_one_node_that_holds_the_whole_request():
    nodes = [node("big-cpu", cpus=64, gpus=0), node("gpus", cpus=8, gpus=4, model="NVIDIA A100-SXM4-80GB")]
    admission.admit(Resources(8, G, 4), nodes)
    with pytest.raises(InsufficientResources, match=r"largest node with 2 such GPU\(s\) has 4 GPU, 8 CPU"):
        admission.admit(Resources(16, G, 2), nodes)  # 16 CPUs are there, not beside GPUs
    with pytest.raises(InsufficientResources, match=r"No node has 1 GPU\(s\) of a model matching 'h100' \(models here: NVIDIA A100"):
        admission.admit(Resources(1, G, 1), nodes, "h100")
    with pytest.raises(InvalidInput, match="asks for no GPU; add -g N"):
        admission.admit(Resources(1, G, 0), nodes, "a100")


def test_defaults_are_capped_by_the_largest_node():
    nodes = [node("a", cpus=1, memory=8 * G, gpus=0)]
    assert admission.run_defaults(nodes, None, None, None) == Resources(1, 8 * G, 0)
    assert admission.run_defaults([node(cpus=32, memory=256 * G, gpus=8)], None, None, None) == Resources(2, 24 * G, 1)
    assert admission.run_defaults(nodes, 0.5, G, 0) == Resources(0.5, G, 0)
    assert admission.like(Resources(8, 32 * G, 2), nodes) == Resources(1, 8 * G, 0)
    assert admission.like(Resources(8, 32 * G, 2), nodes, gpus=0, cpus=0.5) == Resources(0.5, 8 * G, 0)


def test_priority_and_time_limit():
    assert [admission.priority_of(p, admin=False) for p in ("low", "normal", "", "NORMAL")] == [-1, 0, 0, 0]
    assert admission.priority_of("high", admin=True) == 1
    with pytest.raises(Forbidden, match="high is for admins"):
        admission.priority_of("high", admin=False)
    with pytest.raises(InvalidInput, match="one of low, normal, high"):
        admission.priority_of("urgent", admin=True)
    assert admission.time_limit_of(None) is None and admission.time_limit_of(60) == 60.0
    for bad in (0, -1, float("nan"), 400 * 86400):
        with pytest.raises(InvalidInput, match="--time-limit must be more than 0"):
            admission.time_limit_of(bad)


# -- sizes, durations, states ---------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [("24G", 24 * G), ("512M", 512 << 20), ("1.5T", int(1.5 * (1 << 40))),
                                        ("8gb", 8 * G), ("2GiB", 2 * G), ("1024", 1024), (" 1 K ", 1024), (7, 7)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "G", "-1G", "1X", "1.2.3G"])
def test_bad_sizes(text):
    with pytest.raises(InvalidInput, match="is not a size; write it like 512M, 24G or 1.5T"):
        parse_size(text)


def test_format_size_and_duration():
    assert [format_size(n) for n in (0, 7, 1024, 180029, 384555581)] == ["0 B", "7 B", "1.00 KB", "175.81 KB", "366.74 MB"]
    assert [format_duration(s) for s in (0, 45, 90, 3600, 5400, 93784)] == ["0s", "45s", "1m 30s", "1h", "1h 30m", "1d 2h"]


def test_status_transitions():
    assert can_move(Status.QUEUED, Status.RUNNING) and can_move(Status.QUEUED, Status.STOPPED)
    assert can_move(Status.QUEUED, Status.FAILED)  # e.g. its environment could not be built
    assert all(can_move(Status.RUNNING, s) for s in FINAL)  # lost and paused included
    assert not can_move(Status.RUNNING, Status.QUEUED) and not can_move(Status.QUEUED, Status.LOST)
    for final in FINAL:  # an ended session stays ended: a late report cannot revive it (resume is its own path)
        assert not any(can_move(final, s) for s in Status)
    assert ACTIVE | FINAL == set(Status) and not ACTIVE & FINAL
    assert RESUMABLE == FINAL - {Status.EXITED}


def test_submission_transitions():
    assert can_move_submission("running", "evaluating") and can_move_submission(SubmissionStatus.RUNNING, "failed")
    assert can_move_submission("evaluating", "scored") and not can_move_submission("running", "scored")
    for final in SUBMISSION_FINAL:  # a retried report must not score twice
        assert not any(can_move_submission(final, s) for s in SubmissionStatus)


def test_final_status():
    assert final_status(0, stopped=False) == Status.EXITED
    assert final_status(1, stopped=False) == Status.FAILED
    assert final_status(-9, stopped=False) == Status.FAILED
    assert final_status(-15, stopped=True) == Status.STOPPED
    assert final_status(0, stopped=True) == Status.STOPPED
