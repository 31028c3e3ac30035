"""Who fits the reference networks while the latent search runs: independent pieces of work handed out one at a
time (WorkQueue), run by the calling thread and by `helpers` more: threads of this process, or, where the pieces
are numpy only (Levenberg-Marquardt), threads that each hand their pieces to a worker process.

Why processes: an LM iteration on these networks is many numpy calls on arrays of a few thousand rows, and the
latent search is many small torch calls; in two threads of one process they take turns at the GIL. On a 2-CPU
machine four 8-8-8 tanh fits took 3.14 s one after another, 2.10 s in two threads and 1.68 s in two processes, and
the latent search of a CORNN task took 4.5 s alone against 7.1-7.9 s beside a fitting thread.

Why a fork server, not fork: a process that has run torch or onnxruntime holds native thread pools (OpenMP,
onnxruntime's, OpenBLAS's), and a child forked from it inherits their locks in whatever state the fork caught
them. A long-lived process (a notebook, the benchmarks, the test run) that forked a fitting worker after hundreds
of searches hung in CI. The workers are forked instead from multiprocessing's fork server, a fresh interpreter
that has imported the fitting code (preloaded once per process) and never ran a thread pool; each worker
receives the pieces once, pickled, when it starts.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from threadpoolctl import threadpool_limits

__all__ = ["WorkQueue", "piece_runner", "worker_processes"]


class WorkQueue:
    """Piece indices 0..count-1 handed out one at a time to whichever thread asks next (drain), each thread
    running them its own way; results kept in piece order, so who ran what does not change the outcome."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._next = 0
        self._lock = threading.Lock()
        self.results: list[Any] = [None] * count

    def cancel(self) -> None:
        """Hand out nothing more: each draining thread stops after the piece at hand."""
        with self._lock:
            self._next = self._count

    def drain(self, run: Callable[[int], Any]) -> None:
        """Run pieces with `run` until none is left to take."""
        while True:
            with self._lock:
                index, self._next = self._next, self._next + 1
            if index >= self._count:
                return
            self.results[index] = run(index)


# What the fork server imports before it forks a worker: the fitting code, and torch with it (the pieces' modules
# live in swat_edge.search), so a worker starts warm.
_PRELOAD = ["swat_edge.search.validation"]


def worker_processes() -> bool:
    """Whether worker processes can be started here: a platform with multiprocessing's fork server (Linux, macOS),
    and not inside a daemonic process (a multiprocessing.Pool worker may have no children)."""
    return "forkserver" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


# A worker's pieces, received once when it starts (_receive_pieces).
_PIECES: list[Callable[..., Any]] = []


def _receive_pieces(pieces: list[Callable[..., Any]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no traceback per worker
    threadpool_limits(limits=1, user_api="blas")  # for the worker's life: one piece at a time per process
    _PIECES[:] = pieces


def _run_piece(index: int, *args: Any) -> Any:
    return _PIECES[index](*args)


@contextmanager
def piece_runner(pieces: list[Callable[..., Any]], helpers: int, processes: bool) -> Iterator[Callable[..., Any]]:
    """The function a helper thread runs piece k with, run(k, *args) = pieces[k](*args): in this process, or
    (processes, helpers > 0, pieces to run and worker_processes()) in one of `helpers` worker processes started
    on entry, which receive the pieces pickled (module-level functions and partials of them, no closures), the
    arguments and the result pickled on the way."""
    if not (processes and helpers > 0 and pieces and worker_processes()):
        yield lambda index, *args: pieces[index](*args)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    pool = ProcessPoolExecutor(helpers, mp_context=context, initializer=_receive_pieces, initargs=(pieces,))
    try:
        yield lambda index, *args: pool.submit(_run_piece, index, *args).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
