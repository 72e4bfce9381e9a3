"""TaskGroup and ThreadPool: every task of a group has ended when its block is left."""

from __future__ import annotations

import threading

import pytest

from maildiag.tasks import TaskGroup, ThreadPool


def _pool_threads(name: str) -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name.startswith(f"{name}_")}


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_leaving_the_block_waits_for_every_task(shared):
    release = threading.Event()
    ended: list[int] = []

    def task(n: int) -> None:
        release.wait(5)
        ended.append(n)

    with ThreadPool("t-wait") as pool:
        group = TaskGroup(pool if shared else None, size=3, name="t-own")
        with group:
            for n in range(3):
                group.submit(task, n)
            threading.Timer(0.2, release.set).start()
        assert sorted(ended) == [0, 1, 2]


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
def test_a_group_that_has_ended_takes_no_more_tasks(shared):
    with ThreadPool("t-ended") as pool:
        with TaskGroup(pool if shared else None, size=1, name="t-own") as group:
            assert group.submit(lambda: 1).result() == 1
        with pytest.raises(RuntimeError):
            group.submit(lambda: 2)


def test_tasks_that_wait_for_tasks_they_started_never_wait_for_a_free_thread():
    # A probe waits for the side checks it started: with a bounded pool, 40
    # probes holding every thread would wait forever for their side checks.
    parents = 40
    everyone_running = threading.Barrier(parents, timeout=10)
    with ThreadPool("t-nested") as pool, TaskGroup(pool, size=1, name="unused") as group:

        def parent(n: int) -> int:
            everyone_running.wait()
            return int(group.submit(lambda: n * 2).result(timeout=10))

        futures = [group.submit(parent, n) for n in range(parents)]
        assert [f.result(timeout=20) for f in futures] == [n * 2 for n in range(parents)]


def test_a_shared_pool_reuses_idle_threads_for_later_groups():
    with ThreadPool("t-reuse") as pool:
        for _ in range(20):
            with TaskGroup(pool, size=4, name="unused") as group:
                for n in range(4):
                    group.submit(pow, n, 2)
        # Twenty groups of four tasks, one group at a time: a few threads, not 80.
        # (A thread that has just finished a task may not count as idle yet,
        # so the next group can start one more now and then.)
        assert 1 <= len(_pool_threads("t-reuse")) < 20
    assert _pool_threads("t-reuse") == set()


def test_threads_end_after_their_share_of_tasks_and_others_take_over():
    with ThreadPool("t-retire", tasks_per_thread=2) as pool:
        names = [pool.submit(lambda: threading.current_thread().name).result() for _ in range(6)]
    # One task at a time: each thread takes two, then a new one starts.
    assert len(set(names)) == 3, names
    assert _pool_threads("t-retire") == set()


def test_a_failed_task_hands_its_error_to_its_future_without_a_reference_cycle():
    import gc

    def fail() -> None:
        raise LookupError("no such thing")

    with ThreadPool("t-fail") as pool:
        future = pool.submit(fail)
        error = future.exception(timeout=5)
        assert isinstance(error, LookupError)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            del future, error
            gc.collect()
            cycles = [o for o in gc.garbage if type(o).__name__ in ("frame", "traceback", "Future")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert cycles == []
