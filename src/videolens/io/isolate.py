"""Decode in worker processes: prefetch for throughput, isolation so a decoder that crashes or
hangs on one file costs that file only.

FFmpeg is C; a malformed file can segfault or loop forever inside it. Decoding each file in a
worker process turns both into a :class:`~videolens.errors.VideoDecodeError` for that file:
the pool is restarted and the remaining files go on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from ..errors import VideoDecodeError
from .decode import Frames, load_video
from .probe import VideoInfo, probe
from .sampling import Sampling

Loaded = tuple[VideoInfo, Frames]
Loader = Callable[..., Loaded]
# A unit of work: a path, or (path, *arguments) for a loader that takes more, e.g. the
# frame range of one segment of a long video
Item = str | tuple


def _path_of(item: Item) -> str:
    return item[0] if isinstance(item, tuple) else item


def _die_with(parent_pid: int) -> None:
    """Worker initializer: end this worker when the process that asked for it is gone.

    A worker is a child of the forkserver, not of the caller, so the caller's death (kill -9,
    SIGTERM) does not reach it by itself; a decoder stuck in C would then live on, holding
    the caller's stdout. Two guards: the kernel's parent-death signal (Linux), which fires
    when the forkserver exits (it does when the caller dies), and a watchdog thread polling
    the caller's pid, for the platforms and races the first one misses."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="videolens-parent-watch", daemon=True).start()


@contextlib.contextmanager
def main_module_hidden(loader: Loader | None = None) -> Iterator[None]:
    """Start workers without re-running the caller's ``__main__``.

    ``spawn`` and ``forkserver`` import the caller's main script again in every new worker.
    A script without an ``if __name__ == "__main__":`` guard then runs its own videolens call
    inside the worker, which fails, and a heredoc (``python - <<EOF``) names a ``<stdin>``
    file the worker cannot open: either way the worker died before decoding anything. The
    workers only need videolens' own functions, so the main module's name and path are
    hidden while a worker starts — unless the loader itself lives in ``__main__``. Also used
    for training's DataLoader workers (no loader given)."""
    func = getattr(loader, "func", loader)  # functools.partial -> the function
    main = sys.modules.get("__main__")
    if main is None or getattr(func, "__module__", None) == "__main__":
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__")
             if name in main.__dict__}
    try:
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def preload_workers(modules: Sequence[str]) -> bool:
    """Start the forkserver now with ``modules`` imported in it, once.

    Every decode worker is forked from the forkserver and starts with what the server has
    imported; without this, each new pool's worker imports the loader's modules itself
    (1-2 s with torch here), and the encoder waits for its first frames that long on every
    ``index`` run. Called before the model loads, the server's imports overlap the loading.
    Workers stay safe to fork: the server only imports, it never runs torch's thread pools.
    Returns False where there is no forkserver (``spawn`` platforms) or it already runs
    (a server started earlier keeps its own imports; workers then import on demand)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    from multiprocessing import forkserver

    try:
        # process-wide, and read only when the server starts; "__main__" is left out on
        # purpose (see main_module_hidden)
        multiprocessing.get_context("forkserver").set_forkserver_preload(list(modules))
        forkserver.ensure_running()
    except (OSError, ValueError):  # best effort: workers then import on demand
        return False
    return True


def _ready(loader: Loader) -> None:
    """Worker warm-up (:meth:`FrameReader.start`): receiving ``loader`` imports its module."""


def _load_or_error(loader: Loader, item: Item, sampling: Sampling
                   ) -> Loaded | VideoDecodeError:
    """Worker entry point: any failure comes back as a VideoDecodeError value (typed, picklable,
    no traceback to ship), so only a dead or hung worker is an exception for the parent."""
    path = _path_of(item)
    extra = item[1:] if isinstance(item, tuple) else ()
    try:
        return loader(path, sampling, *extra)
    except VideoDecodeError as err:
        return err
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the others
        first = str(err).splitlines()[0] if str(err) else ""
        return VideoDecodeError(f"decoding failed ({type(err).__name__}: {first})", path=path,
                                hint="the file may be damaged; report it if it plays elsewhere")


class FrameReader:
    """Load many videos in order, decoding ahead in worker processes.

    ``sampling``: how to sample each file (:class:`~videolens.io.sampling.Sampling`).
    ``workers``: decoding processes. ``timeout``: seconds one file may take, counted from when
    :meth:`map` starts waiting for it (results are taken in input order). ``isolate=False``:
    decode in this process, one file at a time (for debugging; no timeout). ``prefetch``: files
    in flight (default ``2 * workers``). ``loader``: a picklable top-level function
    ``(path, sampling) -> (VideoInfo, Frames)``, default :func:`~videolens.io.decode.load_video`
    (tests inject one that crashes or hangs).

    Workers start with ``forkserver`` where available (else ``spawn``): forking a process whose
    torch thread pools are running can deadlock the child.

    >>> with FrameReader(Sampling("uniform", num_frames=8)) as reader:
    ...     for path, loaded in reader.map(paths):
    ...         if isinstance(loaded, VideoDecodeError): print(loaded.one_line())
    """

    def __init__(
        self,
        sampling: Sampling,
        workers: int = 1,
        timeout: float = 120.0,
        isolate: bool = True,
        *,
        prefetch: int | None = None,
        loader: Loader = load_video,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.sampling = sampling
        self.workers = workers
        self.timeout = timeout
        self.isolate = isolate
        self.prefetch = max(1, prefetch if prefetch is not None else 2 * workers)
        self.loader = loader
        self.restarts = 0  # pools replaced after a crash or a hang (for tests and logs)
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn")
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (killing any still busy) and release them."""
        self._kill_pool()

    def start(self) -> None:
        """Start the workers now, in the background, so that their start-up (a new process
        importing the loader's modules: a second or more with torch) overlaps the caller's
        own preparation instead of delaying the first result. :meth:`map` starts them
        anyway."""
        if self.isolate and self._pool is None:
            self._submit_call(_ready, self.loader)

    def map(self, paths: Sequence[str | os.PathLike | tuple]
            ) -> Iterator[tuple[Item, Loaded | VideoDecodeError]]:
        """Yield ``(path, (VideoInfo, Frames))`` or ``(path, VideoDecodeError)`` per input path,
        in input order, while the next files decode in the background. An input may also be
        a tuple ``(path, *arguments)``, handed to the loader as ``loader(path, sampling,
        *arguments)`` and yielded back as given."""
        names = [p if isinstance(p, tuple) else os.fspath(p) for p in paths]
        if not self.isolate:
            for name in names:
                yield name, _load_or_error(self.loader, name, self.sampling)
            return
        queue = deque(names)
        in_flight: deque[tuple[Item, Future]] = deque()
        try:
            while queue or in_flight:
                while queue and len(in_flight) < self.prefetch:
                    name = queue.popleft()
                    in_flight.append((name, self._submit(name)))
                name, future = in_flight.popleft()
                result = self._wait(name, future, in_flight)
                yield name, result
        finally:
            for _, future in in_flight:
                future.cancel()

    def _submit(self, name: Item) -> Future:
        return self._submit_call(_load_or_error, self.loader, name, self.sampling)

    def _submit_call(self, fn: Callable, *args) -> Future:
        # workers start inside submit() (on demand), so that is where __main__ is hidden
        with main_module_hidden(self.loader):
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=self._context,
                                                 initializer=_die_with,
                                                 initargs=(os.getpid(),))
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool as error:
                # a worker died after the last result was taken (a crash while the queue
                # was being refilled): this file never ran. Hand back a failed future so
                # that _wait treats it like the rest of the dead pool's files (pool
                # replaced, file retried alone) instead of the error escaping map()
                failed: Future = Future()
                failed.set_exception(error)
                return failed

    def _wait(self, name: Item, future: Future, in_flight: deque[tuple[Item, Future]]
              ) -> Loaded | VideoDecodeError:
        """The result for the head file. A hang or crash kills the pool; the other files in
        flight died with it and are resubmitted to a fresh one."""
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            others = self._drop_pool(in_flight)
            result: Loaded | VideoDecodeError = self._timeout_error(name)
        except BrokenProcessPool:
            codes = self._exit_codes()
            others = self._drop_pool(in_flight)
            # every file in a pool fails when one worker dies, so the head may be innocent:
            # run it again alone, before the others, to know
            result = self._run_alone(name, codes)
        in_flight.extend((other, self._submit(other)) for other in others)
        return result

    def _run_alone(self, name: Item, codes: list[int]) -> Loaded | VideoDecodeError:
        retry = self._submit(name)
        try:
            return retry.result(timeout=self.timeout)
        except FutureTimeout:
            self._drop_pool(deque())
            return self._timeout_error(name)
        except BrokenProcessPool:
            codes = self._exit_codes() or codes
            self._drop_pool(deque())
            return VideoDecodeError(
                f"the decoder crashed on this file ({_describe_exit(codes)})",
                path=_path_of(name),
                hint="the file is probably damaged; re-encode it or skip it",
            )

    def _timeout_error(self, name: Item) -> VideoDecodeError:
        return VideoDecodeError(
            f"decoding took longer than {self.timeout:g} s and was stopped",
            path=_path_of(name),
            hint="the file may make the decoder hang; raise the timeout if it is only long",
        )

    def _drop_pool(self, in_flight: deque[tuple[Item, Future]]) -> list[Item]:
        """Kill the pool; return (and forget) the files that were in flight in it."""
        self._kill_pool()
        self.restarts += 1
        others = [other for other, _ in in_flight]
        in_flight.clear()
        return others

    def _exit_codes(self) -> list[int]:
        processes = getattr(self._pool, "_processes", None) or {}
        return [p.exitcode for p in list(processes.values()) if p.exitcode not in (None, 0)]

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor cannot stop a running task: terminate its processes (a hung
        # decoder ignores everything else), then let it clean up without waiting on them
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + 5.0
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


# What multiprocessing's forkserver Popen reports when it could not read a worker's status
# (the status pipe closed first: seen on a loaded CI machine for a worker killed by SIGSEGV).
_STATUS_LOST = 255


def _describe_exit(codes: list[int]) -> str:
    signalled = [code for code in codes if code < 0]
    for code in signalled:  # a signal says most: prefer it to another worker's status
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    for code in codes:
        if code == _STATUS_LOST:
            return "worker died; its exit status was lost"
        return f"worker exited with status {code}"
    return "worker process died"


def _probe_only(path: str, sampling: Sampling) -> VideoInfo:
    return probe(path)


def probe_many(
    paths: Sequence[str | os.PathLike], timeout: float = 60.0
) -> Iterator[tuple[str, VideoInfo | VideoDecodeError]]:
    """:func:`~videolens.io.probe.probe` each file in a worker process, in input order, so a
    file that crashes or hangs FFmpeg while it is opened is an error for that file only."""
    with FrameReader(Sampling(), timeout=timeout, loader=_probe_only) as reader:
        yield from reader.map(paths)  # type: ignore[misc]  # the loader returns VideoInfo
