"""The placement policy, resource checks and session state rules: pure functions of plain data."""

import pytest

from nsml.core.entities import Session
from nsml.core.errors import InsufficientResources, InvalidInput
from nsml.core.resources import Resources, check_request, format_size, parse_size
from nsml.core.states import ACTIVE, FINAL, Status, can_move, final_status
from nsml.scheduler.policy import place

G = 1 << 30


def session(id: int, cpus: float = 1, memory: int = G, gpus: int = 0, created: float | None = None,
            status: Status = Status.QUEUED, gpu_ids: str = "") -> Session:
    return Session(id=id, owner="alice", dataset="d", number=id, entry="main.py", args="", status=status,
                   resources=Resources(cpus, memory, gpus), created=float(id if created is None else created),
                   gpu_ids=gpu_ids)


def running(id: int, gpu_ids: str = "", **kw) -> Session:
    gpus = len([g for g in gpu_ids.split(",") if g])
    return session(id, gpus=gpus, status=Status.RUNNING, gpu_ids=gpu_ids, **kw)


def placed(decisions) -> list[tuple[int, tuple[int, ...]]]:
    return [(d.session.id, d.gpu_ids) for d in decisions]


def test_everything_that_fits_starts_oldest_first():
    queue = [session(3, created=30), session(1, created=10), session(2, created=20)]
    assert placed(place(queue, [], Resources(8, 8 * G, 0), [])) == [(1, ()), (2, ()), (3, ())]


def test_nothing_to_do():
    assert place([], [], Resources(8, 8 * G, 0), []) == []
    assert place([], [running(1)], Resources(8, 8 * G, 0), []) == []


def test_running_sessions_use_up_capacity():
    cap = Resources(2, 8 * G, 0)
    assert placed(place([session(2), session(3)], [running(1)], cap, [])) == [(2, ())]
    assert place([session(3)], [running(1), running(2)], cap, []) == []


def test_memory_is_a_limit_too():
    cap = Resources(16, 4 * G, 0)
    assert placed(place([session(1, memory=3 * G), session(2, memory=2 * G)], [], cap, [])) == [(1, ())]


def test_backfill_lets_a_small_request_pass_a_large_waiting_one():
    cap = Resources(4, 64 * G, 0)
    queue = [session(2, cpus=4), session(3, cpus=1)]
    assert placed(place(queue, [running(1, cpus=2)], cap, [])) == [(3, ())]


def test_same_creation_time_falls_back_to_id():
    queue = [session(5, created=1.0), session(4, created=1.0)]
    assert placed(place(queue, [], Resources(1, G, 0), [])) == [(4, ())]


def test_gpus_are_handed_out_without_sharing():
    cap = Resources(16, 64 * G, 4)
    queue = [session(2, gpus=2), session(3, gpus=1), session(4, gpus=1)]
    decisions = placed(place(queue, [running(1, gpu_ids="1")], cap, [0, 1, 2, 3]))
    assert decisions == [(2, (0, 2)), (3, (3,))]  # 4 waits: every GPU is taken


def test_gpu_ids_need_not_start_at_zero():
    cap = Resources(16, 64 * G, 2)
    assert placed(place([session(1, gpus=2)], [], cap, [4, 7])) == [(1, (4, 7))]


def test_cpu_only_sessions_start_while_gpus_are_busy():
    cap = Resources(16, 64 * G, 1)
    assert placed(place([session(2, gpus=1), session(3)], [running(1, gpu_ids="0")], cap, [0])) == [(3, ())]


def test_requests_that_can_never_fit_are_refused_with_a_reason():
    cap = Resources(4, 16 * G, 0)
    check_request(Resources(4, 16 * G, 0), cap)
    with pytest.raises(InsufficientResources, match=r"asks for 1 GPU\(s\) but this cluster has 0; .* -g 0"):
        check_request(Resources(1, G, 1), cap)
    with pytest.raises(InsufficientResources, match="largest machine has 0 GPU, 4 CPU, 16.00 GB memory"):
        check_request(Resources(5, G, 0), cap)
    with pytest.raises(InsufficientResources, match="lower -c or --memory"):
        check_request(Resources(1, 17 * G, 0), cap)
    with pytest.raises(InvalidInput, match="more than 0 CPUs"):
        check_request(Resources(0, G, 0), cap)
    with pytest.raises(InvalidInput, match="cannot be negative"):
        check_request(Resources(1, G, -1), cap)


@pytest.mark.parametrize("text, size", [("24G", 24 * G), ("512M", 512 << 20), ("1.5T", int(1.5 * (1 << 40))),
                                        ("8gb", 8 * G), ("2GiB", 2 * G), ("1024", 1024), (" 1 K ", 1024), (7, 7)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "G", "-1G", "1X", "1.2.3G"])
def test_bad_sizes(text):
    with pytest.raises(InvalidInput, match="is not a size; write it like 512M, 24G or 1.5T"):
        parse_size(text)


def test_format_size():
    assert [format_size(n) for n in (0, 7, 1024, 180029, 384555581)] == ["0 B", "7 B", "1.00 KB", "175.81 KB", "366.74 MB"]


def test_status_transitions():
    assert can_move(Status.QUEUED, Status.RUNNING) and can_move(Status.QUEUED, Status.STOPPED)
    assert can_move(Status.QUEUED, Status.FAILED)  # e.g. its environment could not be built
    assert all(can_move(Status.RUNNING, s) for s in FINAL)
    assert not can_move(Status.RUNNING, Status.QUEUED)
    for final in FINAL:  # an ended session stays ended: a late report cannot revive it
        assert not any(can_move(final, s) for s in Status)
    assert ACTIVE | FINAL == set(Status) and not ACTIVE & FINAL


def test_final_status():
    assert final_status(0, stopped=False) == Status.EXITED
    assert final_status(1, stopped=False) == Status.FAILED
    assert final_status(-9, stopped=False) == Status.FAILED
    assert final_status(-15, stopped=True) == Status.STOPPED
    assert final_status(0, stopped=True) == Status.STOPPED
