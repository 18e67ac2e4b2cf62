"""The prepare/infer hand-off of the node: overlap, newest input first, drops reported, errors survived.

Ordering is checked with events (a missing overlap would leave an event unset), never with timings.
"""

from __future__ import annotations

import threading
from collections import Counter

from gsdocc_ros.pipeline.prefetch import Prefetcher

WAIT_S = 20.0  # generous: only reached when the behaviour is wrong


class Recorder:
    """prepare / infer / on_error / on_drop callables that record what they saw."""

    def __init__(self) -> None:
        self.prepared: list[int] = []
        self.inferred: list[int] = []
        self.errors: list[tuple[str, str]] = []
        self.drops: Counter[str] = Counter()
        self.done = threading.Condition()

    def prepare(self, item: int) -> int | None:
        with self.done:
            self.prepared.append(item)
            self.done.notify_all()
        if item < 0:
            raise ValueError(f"bad input {item}")
        return None if item == 0 else item * 10

    def infer(self, item: int) -> None:
        if item == 990:
            raise RuntimeError("bad prepared input")
        with self.done:
            self.inferred.append(item)
            self.done.notify_all()

    def on_error(self, stage: str, error: Exception) -> None:
        with self.done:
            self.errors.append((stage, str(error)))
            self.done.notify_all()

    def wait(self, predicate) -> bool:
        with self.done:
            return self.done.wait_for(predicate, timeout=WAIT_S)

    def prefetcher(self) -> Prefetcher[int, int]:
        return Prefetcher(self.prepare, self.infer, self.on_error, on_drop=lambda stage: self.drops.update([stage]))


def test_next_input_is_prepared_while_the_current_one_is_inferred() -> None:
    second_prepare_started = threading.Event()
    overlapped: list[bool] = []
    inferred: list[int] = []

    def prepare(item: int) -> int:
        if item == 2:
            second_prepare_started.set()
        return item

    def infer(item: int) -> None:
        if item == 1:
            prefetcher.submit(2)  # arrives while input 1 is in the network
            overlapped.append(second_prepare_started.wait(WAIT_S))
        inferred.append(item)

    prefetcher = Prefetcher(prepare, infer, on_error=lambda stage, error: None)
    prefetcher.start()
    try:
        prefetcher.submit(1)
        assert second_prepare_started.wait(WAIT_S)
    finally:
        prefetcher.stop()
    assert overlapped == [True]


def test_newest_input_wins_and_drops_are_reported() -> None:
    recorder = Recorder()
    prefetcher = recorder.prefetcher()
    prefetcher.start()
    try:
        with prefetcher.paused():
            for item in (1, 2, 3):
                prefetcher.submit(item)
        assert recorder.wait(lambda: recorder.inferred == [30])
    finally:
        prefetcher.stop()
    assert recorder.prepared == [3] and recorder.drops == Counter(raw=2)


def test_errors_and_skips_do_not_stop_the_threads() -> None:
    recorder = Recorder()
    prefetcher = recorder.prefetcher()
    prefetcher.start()
    try:
        for item, done in ((-1, lambda: len(recorder.errors) == 1), (0, lambda: recorder.prepared[-1:] == [0]),
                           (99, lambda: len(recorder.errors) == 2), (4, lambda: recorder.inferred == [40])):
            prefetcher.submit(item)
            assert recorder.wait(done), item
    finally:
        prefetcher.stop()
    assert recorder.errors == [("prepare", "bad input -1"), ("infer", "bad prepared input")]
    assert recorder.inferred == [40]  # 0 was skipped by prepare, quietly


def test_none_is_refused() -> None:
    prefetcher = Prefetcher(lambda item: item, lambda item: None, on_error=lambda stage, error: None)
    try:
        prefetcher.submit(None)
    except ValueError as error:
        assert "None" in str(error)
    else:
        raise AssertionError("submit(None) was accepted")


def test_preparation_waits_until_the_inference_is_about_to_end() -> None:
    prefetcher = Prefetcher(lambda item: item, lambda item: None, on_error=lambda stage, error: None)
    prefetcher.infer_s, prefetcher.prepare_s = 9.0, 0.5
    assert prefetcher._prepare_delay(now=100.0) == 0.0  # idle: prepare at once
    prefetcher._busy_since = 100.0
    assert prefetcher._prepare_delay(now=100.0) == 8.5  # a long inference has just begun
    assert prefetcher._prepare_delay(now=108.6) == 0.0  # it ends within one preparation


def test_stop_finishes_the_running_inference_and_drops_the_waiting_one() -> None:
    release = threading.Event()
    started = threading.Event()
    inferred: list[int] = []

    def infer(item: int) -> None:
        started.set()
        release.wait(WAIT_S)
        inferred.append(item)

    prefetcher = Prefetcher(lambda item: item, infer, on_error=lambda stage, error: None)
    prefetcher.start()
    prefetcher.submit(1)
    assert started.wait(WAIT_S)
    prefetcher.submit(2)  # prepared while 1 runs (the first inference has no duration yet: due at once)
    stopper = threading.Thread(target=prefetcher.stop)
    stopper.start()
    release.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive() and inferred == [1]
