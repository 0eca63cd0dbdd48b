"""GroupCommit: submissions that arrive while a group is written form the next group; each gets its
own result, only after its group's run returned; one item's failure stays its own."""

from __future__ import annotations

import asyncio

import pytest

from collector.store.group import GroupCommit, group_order


class _Recorder:
    """A ``run`` that records its groups and can be held open, like a transaction awaiting fsync."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_group = False

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.groups.append(list(items))
        await self.gate.wait()
        if self.fail_group:
            raise OSError("commit failed")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_submissions_during_a_commit_form_the_next_group() -> None:
    run = _Recorder()
    run.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(run)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0)  # the writer starts the first group and waits on its "fsync"
    rest = [asyncio.create_task(group.submit(i)) for i in range(2, 12)]
    await asyncio.sleep(0)
    assert not first.done()  # no reply before the group's run returned
    run.gate.set()
    assert await asyncio.gather(first, *rest) == [i * 10 for i in range(1, 12)]
    assert run.groups == [[1], list(range(2, 12))]
    assert group.groups == 2


async def test_a_failing_item_does_not_fail_its_neighbours() -> None:
    run = _Recorder()
    group: GroupCommit[int, int] = GroupCommit(run)
    results = await asyncio.gather(*(group.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 10
    assert isinstance(results[1], ValueError)
    assert results[2] == 30
    assert run.groups == [[1, -2, 3]]


async def test_a_failed_commit_fails_every_item_of_its_group_only() -> None:
    run = _Recorder()
    run.fail_group = True
    group: GroupCommit[int, int] = GroupCommit(run)
    results = await asyncio.gather(*(group.submit(i) for i in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    run.fail_group = False
    assert await group.submit(3) == 30  # the writer goes on with the next group


async def test_a_cancelled_caller_does_not_cancel_the_shared_commit() -> None:
    run = _Recorder()
    run.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(run)
    gone = asyncio.create_task(group.submit(1))
    stays = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    run.gate.set()
    assert await stays == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.groups == [[1, 2]]  # the cancelled caller's item was still written
    await group.close()


async def test_groups_are_bounded() -> None:
    run = _Recorder()
    run.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(run, max_group=4)
    tasks = [asyncio.create_task(group.submit(i)) for i in range(10)]
    await asyncio.sleep(0)
    run.gate.set()
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(10)]
    assert [len(g) for g in run.groups] == [4, 4, 2]


def test_group_order_is_by_tenant_agent_seq() -> None:
    keys = [("t2", "a", 1), ("t1", "b", 2), ("t1", "b", 1), ("t1", "a", 9)]
    assert [keys[i] for i in group_order(keys)] == sorted(keys)


async def test_lanes_are_written_side_by_side_and_each_groups_its_own() -> None:
    """Lane by parity, as the PostgreSQL store lanes by tenant: lane 1 is written while lane 0's
    group is open (two connections); lane 0's later arrivals wait and form its next group."""
    run = _Recorder()
    run.gate.clear()
    group: GroupCommit[int, int] = GroupCommit(run, lanes=2, lane=lambda i: i % 2)
    tasks = [asyncio.create_task(group.submit(0))]
    for _ in range(3):
        await asyncio.sleep(0)
    tasks += [asyncio.create_task(group.submit(i)) for i in range(1, 6)]  # arrive while 0 is written
    for _ in range(3):
        await asyncio.sleep(0)
    assert run.groups == [[0], [1, 3, 5]]
    run.gate.set()
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(6)]
    assert run.groups == [[0], [1, 3, 5], [2, 4]]
    await group.close()


async def test_a_submission_right_after_a_group_is_not_stranded() -> None:
    """The writer leaves in the same step as its last look at the queue, so the next submission
    either joins its loop or starts a new writer."""
    run = _Recorder()
    group: GroupCommit[int, int] = GroupCommit(run)
    for i in range(50):
        first = asyncio.create_task(group.submit(i))
        second = asyncio.create_task(group.submit(i + 1))
        assert await asyncio.wait_for(asyncio.gather(first, second), 60) == [i * 10, i * 10 + 10]
    await group.close()
