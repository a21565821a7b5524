"""``videolens index``: videos into a library — reader -> encoder -> writer, incremental and
crash-safe.

The loop reads plainly (clip-retrieval's runner): ``loaded = next(reader)`` decodes in a
worker process ahead of the model, ``vectors = model.encode_frames(frames)`` runs here, and
``writer.add_video(...)`` commits one video per transaction, so a crash (even ``kill -9``)
loses at most the video being encoded and a rerun picks up where it stopped.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LibraryError, UsageError, VideoDecodeError
from ..io import FrameReader, Sampling, check_file, file_fingerprint, load_at_rate
from ..io.rate import DEFAULT_MAX_FRAMES
from ..library import Library, WriteLock
from ..models import VideoTextModel
from .common import DEFAULT_LIBRARY, Inputs, as_paths, get_model, resolved

if TYPE_CHECKING:
    from .ray_engine import RayEngine

DEFAULT_FPS = 1.0


@dataclass
class IndexSummary:
    """What an index run did. Times in seconds."""

    library: str
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)
    frames: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    decode_wait_seconds: float = 0.0
    encode_seconds: float = 0.0
    interrupted: bool = False

    def to_json(self) -> dict:
        return {
            "library": self.library,
            "indexed": self.indexed,
            "unchanged": len(self.unchanged),
            "failed": self.failed,
            "pruned": self.pruned,
            "frames": self.frames,
            "video_seconds": round(self.video_seconds, 3),
            "seconds": round(self.seconds, 3),
            "decode_wait_seconds": round(self.decode_wait_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "interrupted": self.interrupted,
        }


def index(
    paths: Inputs,
    *,
    library: str | os.PathLike = DEFAULT_LIBRARY,
    model: VideoTextModel | str | None = None,
    fps: float | None = None,
    device: str = "auto",
    dtype: str = "auto",
    workers: int = 1,
    prune: bool = False,
    retry_failed: bool = False,
    engine: str | RayEngine = "local",
    max_frames: int = DEFAULT_MAX_FRAMES,
    progress: bool = False,
    on_event=None,
) -> IndexSummary:
    """Embed the frames of every video under ``paths`` into the library at ``library``.

    Files and folders are walked (videos recognised by content); unchanged files (same size
    and mtime) are skipped, changed ones re-indexed, files that failed before and have not
    changed are skipped unless ``retry_failed``; ``prune`` drops library entries whose file
    is gone. The first run creates the library bound to ``model`` (default ``clip-b32``) and
    ``fps`` (default 1 frame/s); later runs use what the library was built with, and naming
    another model or rate is a :class:`LibraryError`.

    ``max_frames``: frames kept per video at most (a warning names the videos cut short).

    ``engine``: ``"local"`` decodes in ``workers`` processes and encodes here; ``"ray"``
    (or a :class:`~videolens.pipelines.ray_engine.RayEngine`) decodes and encodes on Ray
    Data, and this process commits each video as it comes back, as locally.

    ``on_event(kind, path, detail)``, if given, is called for ``"indexed"``, ``"failed"``,
    ``"warning"`` and ``"pruned"`` as they happen.
    """
    started = time.perf_counter()
    root = Path(library).expanduser()
    summary = IndexSummary(library=str(root))
    if fps is not None and not fps > 0:
        raise UsageError(f"--fps must be positive, got {fps}")
    candidates = [resolved(p) for p in as_paths(paths)]
    encoder: VideoTextModel | None = model if isinstance(model, VideoTextModel) else None

    def model_once() -> VideoTextModel:
        nonlocal encoder
        if encoder is None:
            encoder = get_model(model or existing_model, device, dtype)
            if store is not None:
                store.check_model(encoder.meta)
        return encoder

    existing_model = None
    store: Library | None = None
    # the writer lock before anything slow: a second run is told at once who is writing,
    # not after loading a model (or with "already exists" on a library being created)
    lock = WriteLock(root, "index run").acquire()
    try:
        store = Library.open_if_exists(root)
        if store is not None:
            existing_model = store.model.get("name")
            if model is not None:
                model_once()  # a different model is an error before any work
            if fps is not None and not math.isclose(store.sampling.get("fps", fps), fps):
                raise LibraryError(
                    f"this library samples {store.sampling.get('fps')} frames/s, not {fps}",
                    path=root,
                    hint="leave --fps out, or index into another --library",
                )
        sampling = Sampling(kind="rate",
                            fps=fps or (store.sampling["fps"] if store else DEFAULT_FPS))
        emit = on_event or (lambda kind, path, detail: None)
        if store is None:
            encoder = model_once()
            store = Library.create(
                root,
                encoder.meta,
                {"kind": "rate", "fps": sampling.fps, "max_side": encoder.frame_max_side},
                lock=lock,
            )
        with store.writer(lock) as writer:
            todo = _plan(store, candidates, summary, retry_failed, emit)
            if todo:
                _run(todo, writer, model_once(), sampling, workers, max_frames, progress,
                     summary, emit, engine)
            if prune:
                for record in store.videos():
                    if not os.path.exists(record.path):
                        writer.remove_video(record.path)
                        summary.pruned.append(record.path)
                        emit("pruned", record.path, "")
        if summary.indexed or summary.pruned:
            store.refresh_vectors()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if store is not None:
            store.close()
        lock.release()
        summary.seconds = time.perf_counter() - started
    return summary


def _plan(store, candidates, summary, retry_failed, emit) -> dict[str, tuple[int, int]]:
    """Split candidates into work to do (path -> size, mtime_ns as planned), unchanged
    files, and known or new failures."""
    known_failures = store.failures()
    todo: dict[str, tuple[int, int]] = {}
    for path in candidates:
        try:
            check_file(path)  # a loop, a FIFO or a device fails here, not in a worker
            stat = os.stat(path)
        except VideoDecodeError as err:
            summary.failed[path] = err.one_line()
            emit("failed", path, summary.failed[path])
            continue
        record = store.video_by_path(path)
        if record is not None and (record.size, record.mtime_ns) == (stat.st_size,
                                                                     stat.st_mtime_ns):
            summary.unchanged.append(path)
            continue
        failure = known_failures.get(path)
        if (not retry_failed and failure is not None
                and failure[1:] == (stat.st_size, stat.st_mtime_ns)):
            summary.failed[path] = f"{failure[0]} (unchanged since it failed; --retry-failed)"
            continue
        # the stat taken now is stored: if the file changes while it is being indexed, the
        # next run sees a different mtime and indexes it again
        todo[path] = (stat.st_size, stat.st_mtime_ns)
    return todo


def _run(todo, writer, model, sampling, workers, max_frames, progress, summary, emit,
         engine) -> None:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="video", file=sys.stderr, dynamic_ncols=True)
    loader = partial(load_at_rate, max_side=model.frame_max_side,
                     max_short_side=model.decode_short_side, max_frames=max_frames)
    try:
        if engine == "local":
            reader = FrameReader(sampling, workers=workers, loader=loader)
        else:  # Ray decodes and encodes: each result also carries the video's vectors
            from .ray_engine import RayReader

            reader = RayReader(engine, sampling, model, output="frames", loader=loader)
        with reader:
            results = reader.map(list(todo))
            while True:
                waited = time.perf_counter()
                try:
                    path, loaded, *encoded = next(results)
                except StopIteration:
                    break
                encode_start = time.perf_counter()
                summary.decode_wait_seconds += encode_start - waited
                _store_one(path, todo[path], loaded, writer, model, summary, emit, *encoded)
                summary.encode_seconds += time.perf_counter() - encode_start
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(frames=summary.frames, refresh=False)
    finally:
        if bar is not None:
            bar.close()


def _store_one(path, planned, loaded, writer, model, summary, emit, vectors=None) -> None:
    size, mtime_ns = planned
    if isinstance(loaded, VideoDecodeError):
        reason = loaded.one_line()
        # the file changed since it was indexed and no longer decodes: its old vectors
        # describe content that is gone, so they must not keep answering searches
        writer.remove_video(path)
        writer.record_failure(path, reason, size, mtime_ns)
        summary.failed[path] = reason
        emit("failed", path, reason)
        return
    info, sampled = loaded
    try:
        if vectors is None:
            vectors = model.encode_frames(sampled.frames).numpy()
        elif isinstance(vectors, Exception):  # the Ray engine's actor could not encode it
            raise vectors
    except (RuntimeError, ValueError) as err:
        reason = f"{path}: encoding failed: {str(err).splitlines()[0] if str(err) else err!r}"
        writer.record_failure(path, reason, size, mtime_ns)
        summary.failed[path] = reason
        emit("failed", path, reason)
        return
    for warning in sampled.warnings:
        emit("warning", path, warning)
    writer.add_video(
        {
            "path": path,
            "size": size,
            "mtime_ns": mtime_ns,
            "fingerprint": file_fingerprint(path, size),
            "duration": info.duration,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "num_frames": len(sampled.timestamps),
            "indexed_at": time.time(),
            "warnings": tuple(sampled.warnings),
        },
        sampled.timestamps,
        vectors,
    )
    summary.indexed.append(path)
    summary.frames += len(sampled.timestamps)
    summary.video_seconds += info.duration
    emit("indexed", path, f"{len(sampled.timestamps)} frames")
