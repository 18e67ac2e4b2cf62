"""Two threads and one hand-off: prepare the next input while the current one is inferred, just in time.

On a GPU the decode of six JPEGs takes a large share of a 25-50 ms step; run one after the other, it adds to
every frame. A ``Prefetcher`` runs ``prepare`` (decode, tf) on one thread and ``infer`` (network, publish) on
another, so that the preparation of input k+1 overlaps the inference of input k. Each side holds only the
newest input (one-slot mailboxes, the newest replaces the older, which is reported as dropped), and a
preparation starts just in time: at once when the inference side is idle, otherwise when the running inference
is expected to end within one preparation (both durations are those last measured). On a slow CPU this keeps
the prepare thread from decoding sets that a newer one would replace before their turn, and the prepared set
from ageing while it waits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

Raw = TypeVar("Raw")
Prepared = TypeVar("Prepared")

IDLE_WAIT_S = 0.5
"""Longest sleep of a thread with nothing to do; it wakes earlier on any hand-off."""


class Prefetcher(Generic[Raw, Prepared]):
    """Runs ``prepare(raw) -> prepared | None`` and ``infer(prepared)`` on two threads, newest input first.

    ``prepare`` returning None drops the input quietly (e.g. skipped by the cadence). An exception in either
    callable goes to ``on_error(stage, error)`` with stage "prepare" or "infer", and the thread goes on.
    ``on_drop(stage)`` is called, under the hand-off lock, each time a newer input replaces one that was waiting
    at ``stage`` ("raw" or "prepared").
    """

    def __init__(self, prepare: Callable[[Raw], Prepared | None], infer: Callable[[Prepared], None],
                 on_error: Callable[[str, Exception], None], on_drop: Callable[[str], None] = lambda stage: None,
                 name: str = "gsdocc") -> None:
        self._prepare, self._infer, self._on_error, self._on_drop = prepare, infer, on_error, on_drop
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._raw: Raw | None = None
        self._prepared: Prepared | None = None
        self._busy_since: float | None = None  # monotonic start of the running inference, None when idle
        self.prepare_s = 0.0
        """Duration of the last preparation, seconds."""
        self.infer_s = 0.0
        """Duration of the last inference, seconds."""
        self._threads = [threading.Thread(target=self._prepare_loop, name=f"{name}-prepare", daemon=True),
                         threading.Thread(target=self._infer_loop, name=f"{name}-inference", daemon=True)]

    def start(self) -> None:
        """Start both threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, raw: Raw) -> None:
        """Hand over a new input (not None); it replaces one that has not started preparing."""
        if raw is None:
            raise ValueError("Prefetcher.submit: the input is None (None marks an empty slot)")
        with self._cond:
            if self._raw is not None:
                self._on_drop("raw")
            self._raw = raw
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop both threads, waiting up to ``timeout`` seconds (None: for ever) for an inference in progress to
        finish (a forward cannot be interrupted). Returns whether both threads ended; if not, the running one ends
        after its set, so whatever it hands the set to must refuse it once closed (the node does)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the hand-off: inside, submitted inputs wait (replacing each other) and no thread takes one."""
        with self._cond:
            yield

    def _prepare_delay(self, now: float) -> float:
        """Seconds until a preparation is due: 0 when the inference side is idle or about to be."""
        if self._busy_since is None:
            return 0.0
        return max(0.0, self._busy_since + self.infer_s - self.prepare_s - now)

    def _take_raw(self) -> Raw | None:
        """Wait until a raw input may be prepared and take it; None once stopping."""
        with self._cond:
            while not self._stop.is_set():
                wait = IDLE_WAIT_S
                if self._raw is not None and self._prepared is None:  # one prepared input ahead at most
                    wait = self._prepare_delay(time.monotonic())
                    if wait <= 0.0:
                        raw, self._raw = self._raw, None
                        return raw
                self._cond.wait(timeout=min(wait, IDLE_WAIT_S))
        return None

    def _prepare_loop(self) -> None:
        while (raw := self._take_raw()) is not None:
            start = time.monotonic()
            try:
                prepared = self._prepare(raw)
            except Exception as error:  # the thread must survive any one bad input
                self._on_error("prepare", error)
                continue
            with self._cond:
                if prepared is None:
                    continue
                self.prepare_s = time.monotonic() - start
                if self._prepared is not None:
                    self._on_drop("prepared")
                self._prepared = prepared
                self._cond.notify_all()

    def _infer_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._prepared is not None or self._stop.is_set())
                if self._stop.is_set():  # a prepared input left waiting is dropped
                    return
                prepared, self._prepared = self._prepared, None
                self._busy_since = time.monotonic()
                self._cond.notify_all()  # the prepare side may take the next input
            try:
                self._infer(prepared)
            except Exception as error:  # the thread must survive any one bad input
                self._on_error("infer", error)
            finally:
                with self._cond:
                    assert self._busy_since is not None
                    self.infer_s = time.monotonic() - self._busy_since
                    self._busy_since = None
                    self._cond.notify_all()
