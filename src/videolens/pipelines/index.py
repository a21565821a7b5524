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

import numpy as np

from ..errors import LibraryError, UsageError, VideoDecodeError
from ..io import (
    FrameReader,
    Sampling,
    VideoInfo,
    check_file,
    file_fingerprint,
    probe_many,
)
from ..io.isolate import preload_workers
from ..io.rate import DEFAULT_MAX_FRAMES, load_at_rate, load_rate_segment, rate_segments
from ..io.threads import configure_threads
from ..library import Library, WriteLock
from ..models import VideoTextModel
from ..models.preprocess import PreprocessSpec
from .common import DEFAULT_LIBRARY, Inputs, as_paths, get_model, prompt_rows, resolved

if TYPE_CHECKING:
    from .ray_engine import RayEngine

DEFAULT_FPS = 1.0
PREPROCESS = ("auto", "tensor", "processor")


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
    preprocess: str = "auto",
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

    ``preprocess``: where frames become model input. ``"tensor"``: resized, cropped and
    normalised by :mod:`videolens.models.preprocess` from the checkpoint's own processor
    config, the resize in the decode worker (within 2 grey levels of the processor);
    ``"processor"``: the checkpoint's Hugging Face image processor, exactly, in this
    process; ``"auto"`` (default): ``"tensor"`` when the processor's rules have a tensor
    path (CLIP, SigLIP, X-CLIP as published), else ``"processor"``. The Ray engine always
    uses the processor.

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
    if preprocess not in PREPROCESS:
        raise UsageError(f"--preprocess must be one of {', '.join(PREPROCESS)}, got "
                         f"{preprocess!r}")
    configure_threads()
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
                # decode workers fork from a server that imports this module (torch and
                # the loaders) while the model loads here
                preload_workers([__name__])
                encoder = model_once()
                _run(todo, writer, encoder, sampling, workers, max_frames, progress,
                     summary, emit, engine, _tensor_spec(encoder, preprocess))
            if prune:
                for record in store.videos():
                    if not os.path.exists(record.path):
                        writer.remove_video(record.path)
                        summary.pruned.append(record.path)
                        emit("pruned", record.path, "")
        if summary.indexed or summary.pruned:
            # a re-tune measures text-query recall on the model's own prompt embeddings
            store.vectors.tuning_text = prompt_rows(model_once)
            store.refresh_vectors()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if store is not None:
            store.close()
        lock.release()
        summary.seconds = time.perf_counter() - started
    return summary


def _tensor_spec(model: VideoTextModel, preprocess: str) -> PreprocessSpec | None:
    """The spec the decode worker preprocesses with, or ``None`` for the exact processor."""
    if preprocess == "processor":
        return None
    spec = model.preprocess_spec
    if spec is None and preprocess == "tensor":
        raise UsageError(f"{model.name}: its image processor has no tensor path",
                         hint="use --preprocess processor (or auto)")
    return spec


def load_pixel_segment(path: str, sampling: Sampling, start: int, stop: int, max_side: int,
                       max_short_side: int | None, spec: PreprocessSpec):
    """Worker-side loader for the tensor path: :func:`~videolens.io.rate.load_rate_segment`,
    then the model's resize and crop (``Frames.frames`` becomes (T, 3, h, w) uint8, ready
    for ``model.encode_pixels``). A quarter of the float32 bytes cross the process
    boundary, and the encoder's process only normalises."""
    import torch

    from ..models.preprocess import resize_crop

    # one thread: this worker runs beside the encoder, whose threads have the CPUs
    torch.set_num_threads(1)
    info, sampled = load_rate_segment(path, sampling, start, stop, max_side, max_short_side)
    if len(sampled.frames):
        sampled.frames = resize_crop(sampled.frames, spec).numpy()
    return info, sampled


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


@dataclass
class _Pending:
    """One video being read segment by segment: what has been encoded so far."""

    info: VideoInfo
    segments: int
    done: int = 0
    timestamps: list[np.ndarray] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    last: float = -math.inf
    ended: float | None = None  # the stream's last frame, once a segment reached it
    failed: bool = False


def _run(todo, writer, model, sampling, workers, max_frames, progress, summary, emit,
         engine="local", spec: PreprocessSpec | None = None) -> None:
    """Probe each file (crash-isolated), cut it into segments of at most SEGMENT frames, then
    ``segment = next(reader)`` -> ``vectors = model.encode_frames(frames)`` -> commit the
    video in one transaction after its last segment. Frames of a long video are never all in
    memory: only the segments in flight are. ``engine`` other than ``"local"``: Ray decodes
    and encodes whole videos (:func:`_run_ray`). ``spec``: preprocess in the decode worker
    (:func:`load_pixel_segment`) instead of with the model's processor here."""
    if engine != "local":
        _run_ray(todo, writer, model, sampling, max_frames, progress, summary, emit, engine)
        return
    if spec is None:
        loader = partial(load_rate_segment, max_side=model.frame_max_side,
                         max_short_side=model.decode_short_side)
    else:
        loader = partial(load_pixel_segment, max_side=model.frame_max_side,
                         max_short_side=model.decode_short_side, spec=spec)
    reader = FrameReader(sampling, workers=workers, loader=loader)
    try:
        # the decode workers start (and import torch) while the files are probed
        reader.start()
        _run_local(todo, writer, model, sampling, max_frames, progress, summary, emit,
                   reader, prepared=spec is not None)
    finally:
        reader.close()


def _run_local(todo, writer, model, sampling, max_frames, progress, summary, emit, reader,
               prepared) -> None:
    pending: dict[str, _Pending] = {}
    items: list[tuple[str, int, int]] = []
    for path, info in probe_many(list(todo)):
        if isinstance(info, VideoDecodeError):
            _fail(path, todo[path], info.one_line(), writer, summary, emit)
            continue
        segments = rate_segments(info.duration, sampling.fps, max_frames)
        state = pending[path] = _Pending(info, len(segments))
        wanted = math.ceil(max(info.duration, 0.0) * sampling.fps - 1e-9)
        if wanted > max_frames:
            state.warnings.append(
                f"sampled only the first {max_frames} frames ({max_frames / sampling.fps:.0f} s "
                f"at {sampling.fps:g}/s) of {info.duration:.0f} s: raise --max-frames to keep "
                "more")
        items.extend((path, start, stop) for start, stop in segments)
    bar = None
    if progress and items:
        from tqdm import tqdm

        total = sum(min(s.info.duration, max_frames / sampling.fps) for s in pending.values())
        bar = tqdm(total=round(total, 1), unit="s", unit_scale=False, file=sys.stderr,
                   dynamic_ncols=True, desc="video indexed",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                   "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
    try:
        results = reader.map(items)
        while True:
            waited = time.perf_counter()
            try:
                (path, start, stop), loaded = next(results)
            except StopIteration:
                break
            encode_start = time.perf_counter()
            summary.decode_wait_seconds += encode_start - waited
            state = pending[path]
            _take_segment(path, state, loaded, model, emit, prepared)
            state.done += 1
            if state.done == state.segments:
                _commit(path, todo[path], state, writer, summary, emit)
            summary.encode_seconds += time.perf_counter() - encode_start
            if bar is not None:
                covered = (stop - start) / sampling.fps
                bar.update(max(0.0, min(covered, state.info.duration - start / sampling.fps)))
                bar.set_postfix(videos=len(summary.indexed), frames=summary.frames,
                                refresh=False)
    finally:
        if bar is not None:
            bar.close()


def _run_ray(todo, writer, model, sampling, max_frames, progress, summary, emit, engine) -> None:
    """The Ray engine's loop: each result is a whole video with its vectors, committed in one
    transaction exactly as the local loop commits."""
    from .ray_engine import RayReader

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="video", file=sys.stderr, dynamic_ncols=True)
    loader = partial(load_at_rate, max_side=model.frame_max_side,
                     max_short_side=model.decode_short_side, max_frames=max_frames)
    try:
        with RayReader(engine, sampling, model, output="frames", loader=loader) as reader:
            results = reader.map(list(todo))
            while True:
                waited = time.perf_counter()
                try:
                    path, loaded, vectors = next(results)
                except StopIteration:
                    break
                started = time.perf_counter()
                summary.decode_wait_seconds += started - waited
                if isinstance(loaded, VideoDecodeError):
                    _fail(path, todo[path], loaded.one_line(), writer, summary, emit)
                elif isinstance(vectors, Exception):  # the actor could not encode it
                    first = str(vectors).splitlines()[0] if str(vectors) else repr(vectors)
                    _fail(path, todo[path], f"{path}: encoding failed: {first}", writer,
                          summary, emit)
                else:
                    info, sampled = loaded
                    state = _Pending(info, 1, timestamps=[sampled.timestamps],
                                     vectors=[np.asarray(vectors)],
                                     warnings=list(sampled.warnings))
                    _commit(path, todo[path], state, writer, summary, emit)
                summary.encode_seconds += time.perf_counter() - started
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(frames=summary.frames, refresh=False)
    finally:
        if bar is not None:
            bar.close()


def _take_segment(path, state: _Pending, loaded, model, emit, prepared=False) -> None:
    """Encode one segment's new frames into ``state`` (or mark the video failed).
    ``prepared``: the frames are (T, 3, h, w) uint8 pixels from :func:`load_pixel_segment`."""
    if state.failed or state.ended is not None:
        return  # a failed video, or segments past the end of its stream: nothing to add
    if isinstance(loaded, VideoDecodeError):
        state.failed = True
        state.warnings = [loaded.one_line()]
        return
    _, sampled = loaded
    for warning in sampled.warnings:
        if warning not in state.warnings:
            state.warnings.append(warning)
    fresh = sampled.timestamps > state.last  # a frame held across a segment boundary
    if fresh.any():
        try:
            if prepared:
                import torch

                vectors = model.encode_pixels(torch.from_numpy(sampled.frames[fresh])).numpy()
            else:
                vectors = model.encode_frames(sampled.frames[fresh]).numpy()
        except (RuntimeError, ValueError) as err:
            state.failed = True
            first = str(err).splitlines()[0] if str(err) else repr(err)
            state.warnings = [f"{path}: encoding failed: {first}"]
            return
        state.timestamps.append(sampled.timestamps[fresh])
        state.vectors.append(vectors)
        state.last = float(sampled.timestamps[fresh][-1])
    if sampled.stream_end is not None:
        state.ended = sampled.stream_end


def _fail(path, planned, reason, writer, summary, emit) -> None:
    size, mtime_ns = planned
    # the file changed since it was indexed and no longer decodes: its old vectors describe
    # content that is gone, so they must not keep answering searches
    writer.remove_video(path)
    writer.record_failure(path, reason, size, mtime_ns)
    summary.failed[path] = reason
    emit("failed", path, reason)


def _commit(path, planned, state: _Pending, writer, summary, emit) -> None:
    if state.failed:
        _fail(path, planned, state.warnings[0], writer, summary, emit)
        return
    info = state.info
    if state.ended is not None and state.ended + 2.0 < info.duration:
        state.warnings = [w for w in state.warnings
                          if not w.startswith("the video stream ends at")]
        state.warnings.append(f"the file declares {info.duration:.2f} s but its last frame "
                              f"is at {state.ended:.2f} s; sampling stopped there")
    timestamps, vectors = np.concatenate(state.timestamps), np.concatenate(state.vectors)
    for warning in state.warnings:
        emit("warning", path, warning)
    size, mtime_ns = planned
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
            "num_frames": len(timestamps),
            "indexed_at": time.time(),
            "warnings": tuple(state.warnings),
        },
        timestamps,
        vectors,
    )
    summary.indexed.append(path)
    summary.frames += len(timestamps)
    summary.video_seconds += info.duration
    emit("indexed", path, f"{len(timestamps)} frames")
