"""``--engine ray``: the embedding step of ``index``, ``eval`` and ``classify`` on Ray Data.

The driver does what it does locally — discover files, skip unchanged ones, commit results —
and hands Ray Data only the expensive middle::

    from_items(paths) -> map_batches(_Decode)   CPU actors; each holds a FrameReader, so a file
                                                that crashes or hangs FFmpeg costs that file
                      -> map_batches(_Encode)   actor pool, the model loaded once per actor,
                                                on a GPU when the cluster has GPUs
                      -> iter_batches()         back on the driver, which commits each video
                                                exactly as the local engine does

:class:`RayReader` has :class:`~videolens.io.FrameReader`'s shape (``with ... as reader:``,
``reader.map(paths)``) but yields ``(path, loaded, encoded)``: ``loaded`` is what the local
reader yields, with the frames left on the worker (only their timestamps and warnings come
back), and ``encoded`` is what the pipeline would have computed from them — ``(T, D)``
frame vectors (``index``), a :class:`~videolens.models.VideoEmbedding` (``classify``,
``eval``), or the exception encoding raised, for the pipeline to word as it does locally.

Faults: an actor that dies (killed, its node lost) is restarted by Ray and its task retried,
at most :attr:`RayEngine.max_retries` times; a file whose task Ray gives up on comes back as
a :class:`~videolens.errors.VideoDecodeError`, like a file that crashes its decoder, so the
run finishes and the summary and exit code are the local engine's.

Nothing here imports Ray at module level: the local path never loads it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ModelLoadError, UsageError, VideoDecodeError, VideolensError
from ..io import FrameReader, Sampling, load_video

if TYPE_CHECKING:  # decode actors import this module: they must not pay for torch
    from ..models import VideoEmbedding, VideoTextModel

INSTALL_HINT = 'pip install "videolens[ray]"'
# "frames": (T, D) vectors per video; "video": one VideoEmbedding; or a picklable
# encode(model, frames) -> anything, run in the actor per video (an eval cache's own rule)
Output = Literal["frames", "video"] | Callable[[Any, np.ndarray], Any]
# Input blocks: one file per block up to this many files (a lost block is one file), then
# several files per block, so a million-file run does not put a million objects up front.
MAX_BLOCKS = 10_000
# Frames per forward pass: the local engine's 32 on a CPU; a GPU wants larger batches.
CPU_FRAMES_PER_BATCH, GPU_FRAMES_PER_BATCH = 32, 256


@dataclass(frozen=True)
class RayEngine:
    """Where and how the Ray engine runs.

    ``address``: ``None`` starts a local Ray runtime on this machine; ``"auto"`` joins the
    cluster this machine belongs to; ``"ray://host:10001"`` connects through Ray Client.
    A runtime the caller already started (``ray.init``) is used as it is.
    ``gpus_per_actor``: GPUs each encoding actor reserves (``None``: 1 when the cluster has
    GPUs, else encode on CPUs; a fraction such as 0.25 puts 4 actors on each GPU, so that the
    image preprocessing, which runs on the actor's CPU, keeps the GPU busy).
    ``dtype``: the encoding actors' weights (``auto``: fp16 on a GPU, fp32 on a CPU).
    ``decode_timeout``: seconds one file may take to decode before it is recorded as failed.
    ``max_retries``: times a task is retried after its worker died, before its files are
    recorded as failed. ``cpu_threads``: torch threads of an encode actor on CPUs (default:
    all the node's cores, as the local engine uses).
    """

    address: str | None = None
    gpus_per_actor: float | None = None
    dtype: str = "auto"
    decode_timeout: float = 120.0
    max_retries: int = 3
    cpu_threads: int | None = None


def as_ray_engine(engine: str | RayEngine) -> RayEngine:
    """``"ray"`` or a :class:`RayEngine` -> the engine settings; anything else is a
    :class:`~videolens.errors.UsageError`."""
    if isinstance(engine, RayEngine):
        return engine
    if engine == "ray":
        return RayEngine()
    raise UsageError(f"unknown engine {engine!r}", hint="use 'local' or 'ray'")


def require_ray():
    """The ``ray`` module with Ray Data, or a one-line UsageError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is an extra of the ray package
    except ImportError:
        raise UsageError("--engine ray needs Ray Data, which is not installed",
                         hint=f"{INSTALL_HINT} (or: pip install 'ray[data]')") from None
    return ray


def connect(engine: RayEngine):
    """Start or join the Ray runtime ``engine`` names (once per process); return ``ray``."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=engine.address, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        except ConnectionError as err:
            raise UsageError(f"cannot reach the Ray cluster at {engine.address!r}: {err}",
                             hint="check --ray-address (auto, or ray://host:10001), or "
                             "leave it out to start a local Ray runtime") from None
    # Ray Data's "starting execution" lines, and its notice that its bars are off, are noise
    # next to the pipelines' own progress bar
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return ray


# --- sizing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourcePlan:
    """How many actors of each kind, and what each reserves (Ray logical resources).

    ``decoders``: decode actors, ``decoder_cpus`` CPUs each (1 but on a node too small for
    that). ``encoders``: encode actors, each reserving ``encoder_cpus`` CPUs and
    ``encoder_gpus`` GPUs. ``encoder_threads``: torch threads in a
    CPU encode actor (``None`` on a GPU). ``frames_per_batch``: frames per forward pass.
    """

    decoders: int
    decoder_cpus: float
    encoders: int
    encoder_cpus: float
    encoder_gpus: float
    encoder_threads: int | None
    frames_per_batch: int


def plan_resources(node_cpus: Sequence[float], total_gpus: float,
                   gpus_per_actor: float | None, cpu_threads: int | None = None
                   ) -> ResourcePlan:
    """Actors for a cluster whose alive nodes have ``node_cpus`` CPUs and ``total_gpus`` GPUs.

    GPUs: one encode actor per ``gpus_per_actor`` (default 1) GPUs, with 1 CPU for its
    preprocessing; every other CPU decodes. CPUs only: encoding is the bottleneck (about 10x
    the CPU time of decoding at 1 frame/s, shared/MEASURED.md), so each node gets one encode
    actor on all but an eighth of its cores, running torch on all of them as the local engine
    does (or ``cpu_threads``), and the rest decode. Nodes are sized by the smallest one.
    """
    cpus = [c for c in node_cpus if c > 0] or [1.0]
    total_cpus = sum(cpus)
    gpa = gpus_per_actor if gpus_per_actor is not None else (1.0 if total_gpus > 0 else 0.0)
    if gpa < 0:
        raise UsageError(f"--ray-gpus-per-actor must be 0 or more, got {gpa:g}")
    if gpa > 0:
        if total_gpus < gpa:
            raise UsageError(
                f"--ray-gpus-per-actor {gpa:g} but the Ray cluster has {total_gpus:g} GPUs",
                hint="pass --ray-gpus-per-actor 0 to encode on CPUs")
        encoders = int(total_gpus // gpa)
        spare = total_cpus - encoders
        if spare >= 1:
            decoders, decoder_cpus, encoder_cpus = int(spare), 1.0, 1.0
        else:  # fewer CPUs than actors need: share them out rather than leave one unscheduled
            decoders, decoder_cpus = 1, total_cpus / (encoders + 1)
            encoder_cpus = decoder_cpus
        return ResourcePlan(decoders=decoders, decoder_cpus=decoder_cpus, encoders=encoders,
                            encoder_cpus=encoder_cpus, encoder_gpus=gpa, encoder_threads=None,
                            frames_per_batch=GPU_FRAMES_PER_BATCH)
    smallest = min(cpus)
    if smallest < 2:  # a 1-CPU node: split it rather than leave the encoder unscheduled
        per_node_decoders, decoder_cpus, encoder_cpus = 1, smallest / 2, smallest / 2
    else:
        per_node_decoders, decoder_cpus = max(1, round(smallest / 8)), 1.0
        encoder_cpus = smallest - per_node_decoders
    return ResourcePlan(decoders=per_node_decoders * len(cpus), decoder_cpus=decoder_cpus,
                        encoders=len(cpus), encoder_cpus=encoder_cpus, encoder_gpus=0.0,
                        encoder_threads=cpu_threads or max(1, int(smallest)),
                        frames_per_batch=CPU_FRAMES_PER_BATCH)


def cluster_plan(ray, engine: RayEngine) -> ResourcePlan:
    """:func:`plan_resources` for the cluster ``ray`` is connected to."""
    node_cpus = [float(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes()
                 if node.get("Alive")]
    gpus = float(ray.cluster_resources().get("GPU", 0))
    return plan_resources(node_cpus, gpus, engine.gpus_per_actor, engine.cpu_threads)


# --- worker side ---------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    # protocol 5 writes numpy buffers out of band-free in one copy
    return pickle.dumps(value, protocol=5)


def _payload_table(orders: list[int], paths: list[str], payloads: list[bytes]):
    import pyarrow as pa

    # large_binary: one long video's frames can pass the 2 GiB of a plain binary column
    return pa.table({"order": pa.array(orders, type=pa.int64()), "path": paths,
                     "payload": pa.array(payloads, type=pa.large_binary())})


class _Decode:
    """Ray Data UDF: rows of paths -> the local reader's ``(VideoInfo, Frames)`` or
    ``VideoDecodeError`` per path, pickled. Decoding runs in this actor's FrameReader worker
    process, so a crash or hang there is that file's failure, not this actor's death."""

    def __init__(self, sampling: Sampling, loader: Callable, timeout: float) -> None:
        self.reader = FrameReader(sampling, workers=1, timeout=timeout, loader=loader)

    def __call__(self, batch):
        orders = batch.column("order").to_pylist()
        paths = batch.column("path").to_pylist()
        payloads = [_dumps(loaded) for _, loaded in self.reader.map(paths)]
        return _payload_table(orders, paths, payloads)

    def __del__(self) -> None:
        self.reader.close()


def _probe_frame() -> np.ndarray:
    """A fixed (1, 64, 64, 3) uint8 image both sides encode to check they hold one model."""
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    rgb = np.stack([ramp[None, :].repeat(64, 0), ramp[:, None].repeat(64, 1),
                    255 - ramp[None, :].repeat(64, 0)], axis=-1)
    return rgb.astype(np.uint8)[None]


def _without_frames(loaded: Any) -> Any:
    """``(info, Frames)`` with the pixels dropped (``(0, H, W, 3)``): the driver needs only
    the timestamps and warnings, and pixels are the bulk of what would travel back."""
    if isinstance(loaded, VideoDecodeError):
        return loaded
    info, sampled = loaded
    empty = np.empty((0, *sampled.frames.shape[1:]), dtype=sampled.frames.dtype)
    return info, dataclasses.replace(sampled, frames=empty)


def _portable(err: Exception) -> Exception:
    """An encoding error the driver can unpickle and word as the local engine does (torch's
    own error classes need not exist, or pickle, on the driver)."""
    return (ValueError if isinstance(err, ValueError) else RuntimeError)(str(err))


class _Encode:
    """Ray Data UDF (an actor pool): decoded rows -> what the pipeline needs from the model.

    The model is loaded once per actor, on the GPU Ray assigned it or on the CPU, and checked
    against the driver's by encoding :func:`_probe_frame` (a node with other weights under the
    same name would otherwise fill the library with vectors from another model).

    A model that will not load is not raised here: Ray would take it for a dead actor, retry
    it and print its traceback. It comes back as every row's result instead, and the driver
    raises it, one line (:meth:`RayReader.map`)."""

    def __init__(self, model_name: str, dtype: str, output: Output, frames_per_batch: int,
                 threads: int | None, probe_vector: np.ndarray) -> None:
        import ray
        import torch

        from ..models import load_model

        on_gpu = bool(ray.get_gpu_ids())
        if threads and not on_gpu:
            # Ray caps a worker at OMP_NUM_THREADS=<its CPUs>; encode as the local engine does
            torch.set_num_threads(threads)
        self.output = output
        self.frames_per_batch = frames_per_batch
        self.failure: VideolensError | None = None
        try:
            self.model = load_model(model_name, "cuda" if on_gpu else "cpu", dtype)
        except VideolensError as err:
            self.failure = type(err)(f"on a Ray worker: {err.message}", path=err.path,
                                     hint=err.hint)
            return
        probe = self.model.encode_frames(_probe_frame()).numpy()[0]
        cosine = float(probe @ probe_vector)
        if not cosine > 0.99:  # fp16 on a GPU against fp32 on the driver stays above 0.999
            self.failure = ModelLoadError(
                f"a Ray worker loaded other weights for {model_name!r} than the driver "
                f"(cosine {cosine:.3f} on a probe image)",
                hint="give every node the same checkpoint: a folder on a shared mount, or "
                "the same hub snapshot")

    def __call__(self, batch):
        orders = batch.column("order").to_pylist()
        paths = batch.column("path").to_pylist()
        rows = [pickle.loads(payload) for payload in batch.column("payload").to_pylist()]
        if self.failure is not None:
            payloads = [_dumps((_without_frames(loaded), self.failure)) for loaded in rows]
            return _payload_table(orders, paths, payloads)
        decoded = [i for i, loaded in enumerate(rows) if not isinstance(loaded, Exception)]
        encoded: list[Any] = [None] * len(rows)
        clips = [rows[i][1].frames for i in decoded]
        try:
            results = self._encode(clips)
        except (RuntimeError, ValueError):
            # one video the model cannot take must cost that video only: retry them alone
            results = []
            for clip in clips:
                try:
                    results.append(self._encode([clip])[0])
                except (RuntimeError, ValueError) as err:
                    results.append(_portable(err))
        for i, result in zip(decoded, results, strict=True):
            encoded[i] = result
        payloads = [_dumps((_without_frames(loaded), result))
                    for loaded, result in zip(rows, encoded, strict=True)]
        return _payload_table(orders, paths, payloads)

    def _encode(self, clips: list[np.ndarray]) -> list[Any]:
        from ..models import VideoEmbedding

        if not clips:
            return []
        if callable(self.output):
            return [self.output(self.model, clip) for clip in clips]
        if self.output == "video":
            embeddings = self.model.encode_videos(clips)
            return [VideoEmbedding(e.embedding.cpu(), None if e.context is None
                                   else e.context.cpu()) for e in embeddings]
        # every clip's frames in one pass, split back: (sum T, H, W, 3) -> (sum T, D) -> [(T, D)]
        frames = [frame for clip in clips for frame in clip]
        vectors = self.model.encode_frames(frames, batch_size=self.frames_per_batch).numpy()
        bounds = np.cumsum([len(clip) for clip in clips])[:-1]
        return np.split(vectors, bounds)


# --- driver side ---------------------------------------------------------------------------


def _model_source(model: VideoTextModel) -> str:
    """What the actors pass to ``load_model``: a local folder as an absolute path (actors do
    not share the driver's working directory), a hub id as it is."""
    name = model.name
    return str(os.path.abspath(os.path.expanduser(name))) if os.path.isdir(
        os.path.expanduser(name)) else name


class RayReader:
    """Decode and encode ``paths`` on Ray; the driver-side twin of :class:`FrameReader`.

    ``sampling`` and ``loader`` (a picklable top-level function, default
    :func:`~videolens.io.load_video`) are what the local reader would use; ``model`` is the
    driver's model, which the actors load again by name; ``output``: ``"frames"`` for
    ``(T, D)`` float32 L2-normalised vectors per video (``encode_frames``), ``"video"`` for
    one :class:`~videolens.models.VideoEmbedding` (``encode_videos``); ``ordered``: yield in
    input order (``classify``) rather than as results arrive.
    """

    def __init__(self, engine: str | RayEngine, sampling: Sampling, model: VideoTextModel, *,
                 output: Output, loader: Callable = load_video, ordered: bool = False) -> None:
        self.engine = as_ray_engine(engine)
        self.sampling = sampling
        self.model = model
        self.output = output
        self.loader = loader
        self.ordered = ordered
        self.plan: ResourcePlan | None = None  # set when map() starts (for logs and tests)

    def __enter__(self) -> RayReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: Ray Data stops a run's actors when its iterator is closed."""

    def map(self, paths: Sequence[str | os.PathLike]
            ) -> Iterator[tuple[str, Any, np.ndarray | VideoEmbedding | Exception | None]]:
        """Yield ``(path, loaded, encoded)`` once per input path (see the module docstring);
        ``encoded`` is ``None`` when ``loaded`` is a :class:`VideoDecodeError`."""
        names = [os.fspath(p) for p in paths]
        if not names:
            return
        ray = connect(self.engine)
        self.plan = cluster_plan(ray, self.engine)
        dataset = self._dataset(ray, names, self.plan)
        done: set[int] = set()
        waiting: dict[int, tuple] = {}  # ordered: results that overtook an earlier file
        next_order = 0
        try:
            for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                for order, payload in zip(block.column("order").to_pylist(),
                                          block.column("payload").to_pylist(), strict=True):
                    if order in done:  # a retried task may deliver a file twice
                        continue
                    done.add(order)
                    loaded, encoded = pickle.loads(payload)
                    if isinstance(encoded, VideolensError):  # no actor could load the model
                        raise encoded
                    if not self.ordered:
                        yield names[order], loaded, encoded
                        continue
                    waiting[order] = (names[order], loaded, encoded)
                    while next_order in waiting:
                        yield waiting.pop(next_order)
                        next_order += 1
        except ray.exceptions.RayError as err:
            raise _unwrap(ray, err) from None
        # files whose tasks Ray gave up on (their worker died max_retries + 1 times)
        for order, name in enumerate(names):
            if order not in done:
                waiting[order] = (name, VideoDecodeError(
                    f"Ray gave up on this file after {self.engine.max_retries} retries (the "
                    "worker processing it died each time)", path=name,
                    hint="see the Ray logs; rerun (with --retry-failed for index) to try "
                    "again"), None)
        yield from (waiting[order] for order in sorted(waiting))

    def _dataset(self, ray, names: list[str], plan: ResourcePlan):
        from ray.data import ActorPoolStrategy

        rows = [{"order": i, "path": name} for i, name in enumerate(names)]
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS))
        context = dataset.context
        context.enable_progress_bars = False  # the pipelines draw their own bar
        # a block whose task failed past its retries is dropped, not fatal: map() reports
        # its files as failed
        context.max_errored_blocks = -1
        # Ray Data's default retries an actor task forever; a file that kills its actor
        # (not just the decoder process, e.g. Ray's out-of-memory killer) would never end
        retries = {"max_restarts": -1, "max_task_retries": self.engine.max_retries}
        # classify/eval: as many fixed-length clips as fill a forward pass; index and views:
        # one video per batch on a CPU (as the local engine encodes), a few on a GPU
        clip_frames = getattr(self.sampling, "num_frames", None)
        if self.output == "video" and getattr(self.sampling, "kind", None) == "uniform":
            rows_per_batch = max(1, plan.frames_per_batch // max(1, clip_frames or 1))
        else:
            rows_per_batch = 1 if plan.encoder_gpus == 0 else 4
        probe_vector = self.model.encode_frames(_probe_frame()).numpy()[0]
        with warnings.catch_warnings():
            # passing retry limits as remote args is deprecated in Ray 2.60 with no named
            # replacement yet
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = dataset.map_batches(
                _Decode, batch_size=1, batch_format="pyarrow", num_cpus=plan.decoder_cpus,
                fn_constructor_args=(self.sampling, self.loader, self.engine.decode_timeout),
                compute=ActorPoolStrategy(min_size=1, max_size=plan.decoders), **retries)
            return dataset.map_batches(
                _Encode, batch_size=rows_per_batch, batch_format="pyarrow",
                num_cpus=plan.encoder_cpus, num_gpus=plan.encoder_gpus or None,
                fn_constructor_args=(_model_source(self.model), self.engine.dtype,
                                     self.output, plan.frames_per_batch, plan.encoder_threads,
                                     probe_vector),
                compute=ActorPoolStrategy(size=plan.encoders), **retries)


def _unwrap(ray, err: Exception) -> Exception:
    """A videolens error raised inside a Ray worker (a model that will not load there) as the
    one-line error it is; anything else as a one-line error naming Ray."""
    cause = getattr(err, "cause", None)
    while cause is not None and not isinstance(cause, VideolensError):
        cause = getattr(cause, "cause", None) or cause.__cause__
    if isinstance(cause, VideolensError):
        return cause
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # Ray colours its messages
    first = text.splitlines()[0] if text else type(err).__name__
    return UsageError(f"the Ray run failed: {first}",
                      hint="see the Ray logs (/tmp/ray/session_latest/logs)")


class _CacheEncode:
    """An embedding cache's own encoding rule (``_encode(frames)``: one or several clips per
    video, by its sampling) without its storage, run in an encode actor."""

    def __init__(self, cache: Any) -> None:
        light = copy.copy(cache)
        light.model, light.db, light.memory, light.engine = None, None, {}, None
        self.cache = light

    def __call__(self, model: VideoTextModel, frames: np.ndarray) -> Any:
        self.cache.model = model
        return self.cache._encode(frames)


class _SingleClipReader(RayReader):
    """A cache with one clip per video: clips of many videos share a forward pass
    (``output="video"``), and each comes back as the one-clip list the cache stores."""

    def map(self, paths):
        for path, loaded, encoded in super().map(paths):
            yield path, loaded, (encoded if encoded is None or isinstance(encoded, Exception)
                                 else [encoded])


def cache_engine(engine: str | RayEngine) -> Callable[[Any, FrameReader], RayReader]:
    """For :class:`~videolens.eval.cache.EmbeddingCache`'s ``engine``: ``(cache, reader) ->
    reader`` decoding on Ray with the local ``reader``'s sampling and loader, and encoding as
    the cache would; its ``map()`` yields ``(path, loaded, clips)``, ``clips`` a list of
    :class:`~videolens.models.VideoEmbedding` (or the exception encoding raised)."""
    settings = as_ray_engine(engine)

    def reader_for(cache: Any, local: FrameReader) -> RayReader:
        if cache.sampling.is_single_segment:
            return _SingleClipReader(settings, local.sampling, cache.model, output="video",
                                     loader=local.loader)
        return RayReader(settings, local.sampling, cache.model, output=_CacheEncode(cache),
                         loader=local.loader)

    return reader_for
