"""The fair-share policy of placement (issue 15): dominant resource fairness by team and user,
quotas, credits, backfill behind a reservation by declared time limits, preemption. Pure
functions of plain data; the real-server tests are in tests/scheduler/test_fair_share_server.py."""

import math
from dataclasses import replace

from nsml.core.entities import Session
from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.scheduler.placement import Policy, place

G = 1 << 30
H = 3600.0


def node(name: str = "n1", gpus: int = 8, cpus: float = 64, memory: int = 512 * G) -> Node:
    return Node(name, cpus, memory, tuple(GpuDevice(i, "A100", 80 * G) for i in range(gpus)))


def job(id: int, owner: str = "alice", gpus: int = 1, team: str = "", created: float | None = None, limit: float | None = None,
        preemptible: bool = False, priority: int = 0, cpus: float = 1) -> Session:
    return Session(id=id, owner=owner, dataset="d", number=id, entry="main.py", args="", status=Status.QUEUED,
                   resources=Resources(cpus, G, gpus), created=float(id if created is None else created), team=team,
                   time_limit=limit, preemptible=preemptible, priority=priority)


def run(s: Session, gpu_ids: str, node: str = "n1", started: float = 0.0) -> Session:
    return replace(s, status=Status.RUNNING, gpu_ids=gpu_ids, node=node, started=started)


def started(plan) -> list[int]:
    return [d.session.id for d in plan.starts]


def test_the_user_holding_least_goes_first_whatever_the_arrival_order():
    # alice holds 4 of 8 GPUs; bob none: bob's later session starts before alice's earlier one.
    holding = [run(job(1, "alice", gpus=4), "0,1,2,3")]
    plan = place([job(2, "alice", gpus=4), job(3, "bob", gpus=4)], holding, [node()])
    assert started(plan) == [3]
    assert [w.session.id for w in plan.waiting] == [2]
    assert math.isclose(plan.shares["bob"], 0.5) and math.isclose(plan.shares["alice"], 0.5)


def test_shares_interleave_users_one_start_at_a_time():
    queue = [job(i, "alice") for i in range(1, 5)] + [job(i, "bob") for i in range(5, 9)]
    plan = place(queue, [], [node(gpus=4)])
    assert sorted(started(plan)) == [1, 2, 5, 6]  # two each, not alice's four


def test_weights_give_a_bigger_share():
    queue = [job(i, "alice") for i in range(1, 7)] + [job(i, "bob") for i in range(7, 13)]
    plan = place(queue, [], [node(gpus=6)], policy=Policy(weights={"alice": 2.0}))
    owners = [d.session.owner for d in plan.starts]
    assert owners.count("alice") == 4 and owners.count("bob") == 2


def test_a_session_is_charged_to_its_team():
    # carol and dave are both in vision, which holds 4 GPUs; erin (no team) holds 2: erin first.
    holding = [run(job(1, "carol", gpus=2, team="vision"), "0,1"), run(job(2, "dave", gpus=2, team="vision"), "2,3"),
               run(job(3, "erin", gpus=2), "4,5")]
    plan = place([job(4, "dave", team="vision"), job(5, "erin")], holding, [node(gpus=7)])
    assert started(plan) == [5]
    assert math.isclose(plan.shares["team:vision"], 4 / 7)


def test_dominant_share_counts_cpus_too():
    # alice holds no GPU but all but 8 of the CPUs: her dominant share is the CPUs, so bob goes first.
    holding = [run(job(1, "alice", gpus=0, cpus=56), "")]
    plan = place([job(2, "alice", gpus=1, cpus=8), job(3, "bob", gpus=1, cpus=8)], holding, [node()])
    assert started(plan) == [3]


def test_priority_still_comes_first():
    holding = [run(job(1, "alice", gpus=4), "0,1,2,3")]
    plan = place([job(2, "alice", priority=1), job(3, "bob")], holding, [node(gpus=5)])
    assert started(plan) == [2]


def test_part_one_and_fifo_orders_are_still_there():
    holding = [run(job(1, "alice", gpus=4), "0,1,2,3")]
    queue = [job(2, "alice", gpus=4), job(3, "bob", gpus=4, priority=1)]
    assert started(place(queue, holding, [node()], policy=Policy(order="priority", reserve=False))) == [3]
    assert started(place(queue, holding, [node()], policy=Policy(order="fifo", reserve=False))) == [2]


def test_a_gpu_quota_holds_a_user_back_with_a_reason():
    holding = [run(job(1, "alice", gpus=2), "0,1")]
    plan = place([job(2, "alice", gpus=2), job(3, "alice", gpus=0)], holding, [node()], policy=Policy(max_gpus={"alice": 3}))
    assert started(plan) == [3]  # a CPU-only session is not held back by a GPU quota
    assert "over alice's GPU quota (2 of 3 in use, this asks for 2)" in plan.waiting[0].reason


def test_a_team_quota_and_a_default_quota():
    holding = [run(job(1, "carol", gpus=2, team="vision"), "0,1")]
    policy = Policy(max_gpus={"team:vision": 2, "user:*": 4})
    plan = place([job(2, "dave", team="vision"), job(3, "erin", gpus=5), job(4, "erin", gpus=4)], holding, [node()], policy=policy)
    assert started(plan) == [4]
    reasons = {w.session.id: w.reason for w in plan.waiting}
    assert "team vision's GPU quota" in reasons[2] and "erin's GPU quota (0 of 4" in reasons[3]


def test_credits_hold_back_what_they_cannot_cover_and_limit_what_has_no_limit():
    # alice has 90 GPU-minutes: a 1-GPU session limited to 2 h waits; one without a limit gets 90 min.
    credit = {"alice": 90 * 60.0}
    plan = place([job(1, "alice", limit=2 * H), job(2, "alice"), job(3, "alice")], [], [node()], credit=credit)
    assert [(d.session.id, d.time_limit) for d in plan.starts] == [(2, 90 * 60.0)]
    reasons = {w.session.id: w.reason for w in plan.waiting}
    assert "does not cover this session's 120 GPU-minutes" in reasons[1]
    assert "no GPU credit left for alice" in reasons[3]  # the first took it all
    assert credit == {"alice": 90 * 60.0}  # the caller's mapping is not changed


def test_backfill_never_delays_the_reservation_of_the_head():
    # 8 GPUs; 6 held until t=2h by declared limits. The head wants 7: reserved at 2h on n1,
    # when 1 GPU will be left over.
    holding = [run(job(1, "alice", gpus=6, limit=2 * H), "0,1,2,3,4,5")]
    head = job(2, "bob", gpus=7)
    short = job(3, "carol", gpus=2, limit=1 * H)  # ends before 2h: may use the hole
    long = job(4, "dave", gpus=2, limit=5 * H)  # would still hold 2 of the 4 at 2h: may not
    unlimited = job(5, "erin", gpus=2)  # no limit: never backfilled past a reservation
    for queue, expect in (([head, short], [3]), ([head, long], []), ([head, unlimited], [])):
        plan = place(queue, holding, [node()], now=0.0)
        assert started(plan) == expect, queue
        assert plan.reservation[0].id == 2 and plan.reservation[1:] == ("n1", 2 * H)
    reasons = {w.session.id: w.reason for w in place([head, unlimited], holding, [node()]).waiting}
    assert "reserved on n1, free in 2h" in reasons[2]
    assert "would delay alice/d/2's reservation" not in reasons[5] and "never backfilled past one" in reasons[5]


def test_backfill_may_use_what_the_reservation_leaves_over():
    # At 2h, 8 GPUs are free and the head needs 4: a long 2-GPU session fits in the extra.
    holding = [run(job(1, "alice", gpus=8, limit=2 * H), ",".join(map(str, range(8))))]
    plan = place([job(2, "bob", gpus=4), job(3, "carol", gpus=2, limit=9 * H)], holding, [node(gpus=10)])
    assert started(plan) == [3]


def test_another_node_is_not_held_by_the_reservation():
    holding = [run(job(1, "alice", gpus=8, limit=2 * H), ",".join(map(str, range(8))), node="n1")]
    plan = place([job(2, "bob", gpus=8), job(3, "carol", gpus=2)], holding, [node("n1"), node("n2", gpus=2)])
    assert started(plan) == [3] and plan.reservation[1] == "n1"


def test_without_declared_limits_nothing_is_reserved_and_backfill_is_free():
    holding = [run(job(1, "alice", gpus=6), "0,1,2,3,4,5")]
    plan = place([job(2, "bob", gpus=4), job(3, "carol", gpus=2)], holding, [node()])
    assert plan.reservation is None and started(plan) == [3]


def test_preemptible_sessions_fill_idle_gpus_and_are_chosen_for_a_regular_one():
    holding = [run(job(1, "alice", gpus=4, preemptible=True), "0,1,2,3", started=10.0),
               run(job(2, "alice", gpus=2, preemptible=True), "4,5", started=20.0),
               run(job(3, "carol", gpus=2), "6,7")]
    plan = place([job(4, "bob", gpus=2)], holding, [node()], now=30.0)
    assert started(plan) == [] and [s.id for s in plan.preempt] == [2]  # the youngest, and only as many as needed
    assert plan.reservation[0].id == 4 and "once the sessions being preempted have checkpointed" in plan.waiting[0].reason
    # Once it is being preempted, it is not chosen again, and what it frees stays promised to bob.
    holding[1] = replace(holding[1], pause_requested="preempt")
    again = place([job(4, "bob", gpus=2), job(5, "dave", gpus=2, preemptible=True)], holding, [node()], now=31.0)
    assert again.preempt == [] and started(again) == [] and again.reservation[0].id == 4


def test_a_preemptible_session_never_preempts():
    holding = [run(job(1, "alice", gpus=8, preemptible=True), ",".join(map(str, range(8))))]
    plan = place([job(2, "bob", gpus=1, preemptible=True)], holding, [node()])
    assert plan.preempt == [] and plan.reservation is None


def test_a_few_heads_get_reservations_on_nodes_of_their_own():
    full = lambda i, n: run(job(i, "zed", gpus=8, limit=(i - 90) * H), ",".join(map(str, range(8))), node=n)  # noqa: E731
    holding = [full(91, "n1"), full(92, "n2")]  # n1 free at 1 h, n2 at 2 h
    a, b = job(1, "alice", gpus=8), job(2, "bob", gpus=8)
    plan = place([a, b], holding, [node("n1"), node("n2"), node("n3", gpus=1)], now=0.0)
    assert [(s.id, n, at) for s, n, at in plan.reservations] == [(1, "n1", H), (2, "n2", 2 * H)]
    # A 1-GPU session for 3 h may take n3's GPU: n3 is nobody's reservation.
    assert started(place([a, b, job(3, "carol", limit=3 * H)], holding, [node("n1"), node("n2"), node("n3", gpus=1)])) == [3]
    reasons = {w.session.id: w.reason for w in plan.waiting}
    assert reasons[1].startswith("next to start: 8 GPU") and "reserved for it on n2, free in 2h" in reasons[2]
    one = place([a, b], holding, [node("n1"), node("n2")], policy=Policy(reservations=1))
    assert [s.id for s, _, _ in one.reservations] == [1]


def test_preemptible_sessions_queue_after_every_regular_one():
    # A preempted session queued again must not go ahead of the low-priority head it made way for.
    plan = place([job(1, "alice", preemptible=True, priority=1), job(2, "bob", priority=-1)], [], [node(gpus=1)])
    assert started(plan) == [2] and [w.session.id for w in plan.waiting] == [1]


def test_a_preemptible_session_within_its_fair_share_queues_as_a_regular_one():
    # alice and bob want GPUs: each is owed half of the 4. alice's preemptible sessions within
    # that half queue as regular ones, taking turns with bob's (low priority, but within his
    # share too); her third, beyond it, after every regular one, bob's low ones beyond his share
    # included.
    queue = [job(i, "bob", priority=-1) for i in range(1, 5)] + [job(i, "alice", preemptible=True) for i in range(5, 8)]
    plan = place(queue, [], [node(gpus=4)])
    assert started(plan) == [5, 1, 6, 2]
    assert [w.session.id for w in plan.waiting] == [3, 4, 7]


def test_low_priority_within_the_fair_share_is_served_as_normal():
    # bob holds nothing and asks at low priority; alice, beyond her half of the 4 GPUs, at
    # normal: bob's low session within his share goes first, his next one (beyond it) after
    # alice's normal ones. Part 1's order would start alice's two.
    holding = [run(job(1, "alice", gpus=2), "0,1")]
    queue = [job(2, "alice"), job(3, "alice"), job(4, "bob", priority=-1), job(5, "bob", priority=-1, gpus=2)]
    plan = place(queue, holding, [node(gpus=4)])
    assert started(plan) == [4, 2]
    assert [w.session.id for w in plan.waiting] == [3, 5]
    assert started(place(queue, holding, [node(gpus=4)], policy=Policy(order="priority"))) == [2, 3]


def test_a_users_own_normal_sessions_go_before_their_low_ones():
    queue = [job(1, "alice", priority=-1), job(2, "alice"), job(3, "alice", priority=1)]
    plan = place(queue, [], [node(gpus=2)])
    assert started(plan) == [3, 2] and [w.session.id for w in plan.waiting] == [1]


def test_only_what_a_team_holds_beyond_its_fair_share_is_preempted():
    # alice, carol and bob want GPUs: each is owed a third of the 8 (2.7 GPUs). alice holds 5 on
    # preemptible sessions: the three youngest are beyond her share (she is above it with each),
    # the other two are not.
    holding = [run(job(i, "alice", preemptible=True), str(i - 1), started=float(i)) for i in range(1, 6)]
    holding.append(run(job(6, "carol", gpus=3), "5,6,7"))
    plan = place([job(7, "bob", gpus=2)], holding, [node()], now=10.0)
    assert sorted(s.id for s in plan.preempt) == [4, 5] and plan.reservation[0].id == 7
    assert sorted(s.id for s in place([job(7, "bob", gpus=3)], holding, [node()], now=10.0).preempt) == [3, 4, 5]
    assert place([job(7, "bob", gpus=4)], holding, [node()], now=10.0).preempt == []  # would take alice below her share


def test_preemptible_sessions_are_moved_to_make_a_node_whole():
    # erin's preemptible 4-GPU session fits nowhere; dave's 1-GPU one on n2 fits in n1's free GPU:
    # it is preempted (it starts again there), and n2 is kept for erin meanwhile.
    movable = replace(run(job(2, "dave", preemptible=True), "0", node="n2"), pausable=True)
    holding = [run(job(1, "carol", gpus=3), "0,1,2", node="n1"), movable]
    nodes = [node("n1", gpus=4), node("n2", gpus=4)]
    head = job(3, "erin", gpus=4, preemptible=True)
    plan = place([head], holding, nodes, now=5.0)
    assert [s.id for s in plan.preempt] == [2] and plan.reservation[:2] == (head, "n2")
    # While dave's session checkpoints, n2 stays erin's and nothing more is preempted.
    holding[1] = replace(holding[1], pause_requested="preempt")
    again = place([head], holding, nodes, now=6.0)
    assert again.preempt == [] and again.reservation[:2] == (head, "n2") and started(again) == []
    # With nowhere for dave's session to go, it is left alone.
    assert place([head], [run(job(1, "carol", gpus=4), "0,1,2,3", node="n1"), movable], nodes, now=5.0).preempt == []
    # Nor is one whose script cannot pause: it would be stopped, not moved.
    room = run(job(1, "carol", gpus=3), "0,1,2", node="n1")
    assert place([head], [room, replace(movable, pausable=False)], nodes, now=5.0).preempt == []


def test_a_session_goes_where_it_keeps_nodes_coming_free_together():
    # By their declared limits a comes free whole in 2 h, b in 10 h. A 1-hour session extends
    # neither: it packs the fuller, b. A 9-hour one would keep a from being whole 7 h longer, b
    # not at all: b. A 20-hour one extends b by 10 h, a by 18 h: b.
    nodes = [node("a", gpus=8), node("b", gpus=8)]
    holding = [run(job(1, gpus=2, limit=2 * H), "0,1", node="a"), run(job(2, gpus=4, limit=10 * H), "0,1,2,3", node="b")]
    queue = [job(3, "bob", limit=1 * H), job(4, "carol", limit=9 * H), job(5, "dave", limit=20 * H)]
    plan = place(queue, holding, nodes, now=0.0)
    assert [(d.session.id, d.node) for d in plan.starts] == [(3, "b"), (4, "b"), (5, "b")]
    # Where the ends do not decide, the fuller node does (part 1's packing).
    plan = place([job(6, "erin", limit=1 * H)], [], nodes)
    assert [(d.session.id, d.node) for d in plan.starts] == [(6, "a")]


def test_a_session_without_a_limit_joins_another_without_one():
    # a holds a session with no declared limit (it may never come free whole); b one ending in
    # an hour. A session without a limit goes on a, though b is the fuller: b comes free soon.
    # So does one with a limit: on a it delays nothing, on b it would delay b's 4 free GPUs.
    nodes = [node("a", gpus=8), node("b", gpus=8)]
    holding = [run(job(1, gpus=1), "0", node="a"), run(job(2, gpus=4, limit=H), "0,1,2,3", node="b")]
    for limit in (None, 5 * H):
        plan = place([job(3, "bob", limit=limit)], holding, nodes)
        assert [(d.session.id, d.node) for d in plan.starts] == [(3, "a")]
    # With nothing but limited sessions anywhere, the one without a limit packs the fuller node.
    holding = [run(job(1, gpus=1, limit=H), "0", node="a"), run(job(2, gpus=4, limit=H), "0,1,2,3", node="b")]
    plan = place([job(3, "bob")], holding, nodes)
    assert [(d.session.id, d.node) for d in plan.starts] == [(3, "b")]
