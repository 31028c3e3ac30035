"""Who fits the reference networks while the latent search runs: independent pieces of work handed out one at a
time (WorkQueue), run by the calling thread and by `helpers` more: threads of this process, or, where the pieces
are numpy only (Levenberg-Marquardt), threads that each hand their pieces to a worker process.

Why processes: an LM iteration on these networks is many numpy calls on arrays of a few thousand rows, and the
latent search is many small torch calls; in two threads of one process they take turns at the GIL. On a 2-CPU
machine four 8-8-8 tanh fits took 3.14 s one after another, 2.10 s in two threads and 1.68 s in two processes, and
the latent search of a CORNN task took 4.5 s alone against 7.1-7.9 s beside a fitting thread.

How a worker starts: forked from this process where it has no more threads than when the fitting code was
imported (a command-line search: the main thread and OpenBLAS's pool, forked before torch runs), else from
multiprocessing's fork server. A process that has run torch or onnxruntime holds their native thread pools, and a
child forked from it inherits their locks in whatever state the fork caught them: the likely cause (not
reproduced) of a CI test run that hung in a search test, its workers forked from such a process. The fork server
is a fresh interpreter that has imported the fitting code (preloaded once per process) and forks the workers
from there. Fork where it is safe, because it is faster beside the latent search: searches of 9 CORNN tasks for
cortex-m4, the workers forked from the server, took a median 1.19x as long as with the workers forked from the
searching process (raspi4, 18 tasks: 1.08x), for the same models; alone, a worker fits as fast either way. Each
worker receives the pieces once, when it starts (pickled, for the fork server).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from threadpoolctl import threadpool_limits

__all__ = ["WorkQueue", "piece_runner", "start_method", "worker_processes"]


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


def _threads() -> int | None:
    """This process's threads (Linux: /proc/self/task); None where that cannot be read."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


_THREADS_AT_IMPORT = _threads()


def start_method() -> str:
    """How worker processes start now: "fork" on Linux with Python >= 3.11 (whose process pool forks all its
    workers at once, on entry) where this process has no more threads than when this module was imported (the
    main thread and OpenBLAS's pool); "forkserver" otherwise.

    A count, not the thread ids: a fork ends OpenBLAS's pool and setting its thread limit starts it again with new
    ids, so the limit is set here before counting (a thread started in the pool's place would go unnoticed)."""
    with threadpool_limits(limits=1, user_api="blas"):
        now = _threads()
    quiet = now is not None and _THREADS_AT_IMPORT is not None and now <= _THREADS_AT_IMPORT
    return "fork" if quiet and sys.platform == "linux" and sys.version_info >= (3, 11) else "forkserver"


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
    on entry (start_method), which receive the pieces (module-level functions and partials of them, no closures:
    the fork server gets them pickled), the arguments and the result pickled on the way. Enter it before this
    thread starts other threads or runs torch."""
    if not (processes and helpers > 0 and pieces and worker_processes()):
        yield lambda index, *args: pieces[index](*args)
        return
    method = start_method()
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(_PRELOAD)
    pool = ProcessPoolExecutor(helpers, mp_context=context, initializer=_receive_pieces, initargs=(pieces,))
    try:
        if method == "fork":
            pool.submit(int).result()  # fork every worker now, before torch runs here
        yield lambda index, *args: pool.submit(_run_piece, index, *args).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
