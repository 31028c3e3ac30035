"""Who fits the reference networks while the latent search runs: independent pieces of work handed out one at a
time (WorkQueue), run by the calling thread and by `helpers` more: threads of this process, or, where the pieces
are numpy only (Levenberg-Marquardt) and the platform forks, threads that each hand their pieces to a forked
worker process.

Why processes: an LM iteration on these networks is many numpy calls on arrays of a few thousand rows, and the
latent search is many small torch calls; in two threads of one process they take turns at the GIL. On a 2-CPU
machine four 8-8-8 tanh fits took 3.14 s one after another, 2.10 s in two threads and 1.68 s in two processes, and
the latent search of a CORNN task took 4.5 s alone against 7.1-7.9 s beside a fitting thread.

Why fork: the pieces close over the search's problem (the torch embedding included); a forked child inherits them,
so nothing is pickled on the way in and only the fitted trials come back. The children are forked before the
latent search runs torch in this process, and never call torch themselves.
"""
from __future__ import annotations

import itertools
import multiprocessing
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["WorkQueue", "forks", "piece_runner"]


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


def forks() -> bool:
    """Whether worker processes can be forked here: Linux, and Python >= 3.11, whose process pool forks all its
    workers at once when first used (earlier ones fork one per submission, later, while torch may be running;
    cpython issue 90622), and not inside a daemonic process (a multiprocessing.Pool worker may have no children)."""
    return (sys.platform == "linux" and sys.version_info >= (3, 11)
            and not multiprocessing.current_process().daemon)


# The pieces of each live piece_runner, by token: a forked worker finds its pieces here, inherited at the fork.
_INHERITED: dict[int, list[Callable[[], Any]]] = {}
_TOKENS = itertools.count()


def _run_inherited(token: int, index: int, *args: Any) -> Any:
    return _INHERITED[token][index](*args)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: no traceback per worker


@contextmanager
def piece_runner(pieces: list[Callable[..., Any]], helpers: int, processes: bool) -> Iterator[Callable[..., Any]]:
    """The function a helper thread runs piece k with, run(k, *args) = pieces[k](*args): in this process, or
    (processes, helpers > 0, pieces to run and forks()) in one of `helpers` worker processes forked on entry, the
    arguments and the result pickled on the way. Enter it before any other thread starts work."""
    if not (processes and helpers > 0 and pieces and forks()):
        yield lambda index, *args: pieces[index](*args)
        return
    token = next(_TOKENS)
    _INHERITED[token] = pieces
    pool = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_ignore_interrupts)
    try:
        pool.submit(int).result()  # fork every worker now, with the pieces registered and before torch runs
        yield lambda index, *args: pool.submit(_run_inherited, token, index, *args).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        del _INHERITED[token]
