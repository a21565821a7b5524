"""``--engine local|ray`` and the Ray options, the same on ``index``, ``classify`` and ``eval``.

Ray is never imported here: ``--engine local`` (the default) keeps the command free of it,
and ``--engine ray`` without Ray installed is one line saying how to install it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..pipelines.ray_engine import RayEngine


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--ray-address`` and ``--ray-gpus-per-actor`` to ``parser``."""
    group = parser.add_argument_group("engine (who decodes and encodes)")
    group.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local: this machine (default); ray: Ray Data, decoding on CPU actors and "
        "encoding in a pool of model actors (pip install 'videolens[ray]')")
    group.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="with --engine ray: auto (the cluster this machine is part of) or "
        "ray://HOST:10001 (default: start a Ray runtime on this machine)")
    group.add_argument(
        "--ray-gpus-per-actor", type=float, default=None, metavar="N",
        help="with --engine ray: GPUs per encoding actor (default 1 when the cluster has "
        "GPUs, else encode on CPUs; 0.25 puts 4 actors on each GPU)")


def engine_from_args(args: argparse.Namespace) -> str | RayEngine:
    """``"local"``, or the :class:`~videolens.pipelines.ray_engine.RayEngine` the options
    describe. Checks that Ray is installed before any model is loaded.

    Raises:
        UsageError: Ray options without ``--engine ray``, or Ray not installed.
    """
    if args.engine == "local":
        if args.ray_address is not None or args.ray_gpus_per_actor is not None:
            raise UsageError("--ray-address and --ray-gpus-per-actor need --engine ray")
        return "local"
    from ..pipelines.ray_engine import RayEngine, require_ray

    require_ray()
    return RayEngine(address=args.ray_address, gpus_per_actor=args.ray_gpus_per_actor,
                     dtype=getattr(args, "dtype", "auto"))
