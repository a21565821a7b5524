"""The ``videolens`` command: thin argument parsing over the public Python API.

:mod:`.parser` defines the commands and options, :mod:`.commands` runs each one by calling
the same functions a Python user calls (:mod:`videolens.pipelines`), :mod:`.serve` starts
the web server, and :mod:`.options` holds the shared option helpers and output rules.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import VideolensError
from . import commands
from .library import run_library
from .options import EXIT_OK, EXIT_USAGE, model_options_from, note
from .parser import build_parser
from .serve import run_serve
from .train import run_train

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handlers = {
        "classify": commands.run_classify,
        "index": commands.run_index,
        "search": commands.run_search,
        "localize": commands.run_localize,
        "eval": commands.run_eval,
        "serve": run_serve,
        "train": run_train,
        "probe": commands.run_probe,
        "models": commands.run_models,
        "completion": commands.run_completion,
        "library": run_library,
    }
    _terminate_like_interrupt()
    try:
        with model_options_from(args):
            return handlers[args.command](args)
    except VideolensError as err:
        note(f"error: {err.one_line()}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    except BrokenPipeError:
        # `videolens classify ... | head` closes stdout early; that is not an error
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


def _terminate_like_interrupt() -> None:
    """SIGTERM (``kill``, a job scheduler, ``docker stop``) takes the Ctrl-C path: workers are
    stopped, what was committed stays, the exit code is 130. Only from the main thread."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
