"""``videolens serve``: the web app over a library, with uvicorn.

Kept apart from :mod:`videolens.cli` so that the web dependencies (the ``serve`` extra) are
imported only when this command runs.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys

from .options import (
    EXIT_OK,
    EXIT_USAGE,
    add_library_option,
    add_model_options,
    note,
    quiet_libraries,
)

TOKEN_ENV = "VIDEOLENS_TOKEN"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def add_serve_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``commands`` (the parser's subparsers)."""

    serve = commands.add_parser(
        "serve",
        help="browse, search, localize and classify a library in a web browser",
        description="Serve a web UI and a JSON API (OpenAPI at /docs) over an indexed "
        "library. Bound to loopback by default; any other address requires --token.",
    )
    add_library_option(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; others need --token)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    serve.add_argument("--token", default=None,
                       help=f"require this token on every request (default: ${TOKEN_ENV}, "
                       "better: a command line is visible to other users); send it as "
                       "'Authorization: Bearer T' or open the page with ?token=T")
    add_model_options(serve, default=None)
    serve.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch/FAISS threads (default: $VIDEOLENS_THREADS, else 1, which "
                       "stays fast when other processes keep the CPUs busy)")
    for action in serve._actions:
        if action.dest == "model":  # serve never creates a library: no "for a new library"
            action.help = "the library's model (default), or a name or folder checked against it"
    return serve


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only listens on this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (as uvicorn binds one: SO_REUSEADDR, IPv6 when
    the host has a colon), for uvicorn to listen on. OSError when the port is taken or the
    address is not this machine's."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _bind_problem(err: OSError, port: int) -> str:
    if err.errno == errno.EADDRINUSE:
        return "the port is in use (another server?): stop it or pick another --port"
    if err.errno == errno.EACCES:
        return f"permission denied (ports below 1024 need root): pick a --port above 1023, " \
               f"not {port}"
    if err.errno == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror):
        return "this machine has no such address: use 127.0.0.1, 0.0.0.0 or one of its own"
    return err.strerror or str(err)


def run_serve(args: argparse.Namespace) -> int:
    """Check the token and the port, load the library and its model, then serve until
    Ctrl-C. Exit 2 on a usage error (no library, a public address without a token, a token
    that cannot be sent, a bad or busy port) — before the address is printed."""
    from ..errors import VideolensError

    token = args.token or os.environ.get(TOKEN_ENV) or None
    loopback = is_loopback(args.host)
    if not loopback and not token:
        note(f"error: --host {args.host} is reachable from other machines: set --token "
             f"(or ${TOKEN_ENV}) so that only people with the token can see the library")
        return EXIT_USAGE
    if not 0 < args.port < 65536:
        note(f"error: --port must be between 1 and 65535, got {args.port}")
        return EXIT_USAGE
    if args.threads is not None and args.threads < 1:
        note(f"error: --threads must be at least 1, got {args.threads}")
        return EXIT_USAGE
    try:
        import uvicorn

        from ..web import create_app
        from ..web.security import check_token
    except ImportError as err:
        note(f"error: the web server needs extra packages ({err.name} is missing) — "
             "pip install 'videolens[serve]'")
        return EXIT_USAGE
    from ..library import Library

    # cheap checks first, the model last: a bad token, a missing library or a busy port is
    # known in milliseconds, not after loading the weights
    try:
        if token:
            check_token(token)
    except VideolensError as err:
        note(f"error: --token: {err.one_line()}")
        return EXIT_USAGE
    try:
        Library.open(os.path.expanduser(args.library)).close()
    except VideolensError as err:
        note(f"error: {err.one_line()}")
        return EXIT_USAGE
    try:
        sock = listen_socket(args.host, args.port)
    except OSError as err:
        note(f"error: cannot listen on {args.host}:{args.port}: {_bind_problem(err, args.port)}")
        return EXIT_USAGE

    quiet_libraries()
    from ..io.threads import configure_threads

    # before the model loads: the pipeline calls the server makes then keep this setting
    configure_threads("serve", args.threads)
    try:
        app = create_app(
            args.library, model=args.model, device=args.device, dtype=args.dtype, token=token,
            # loopback: refuse other Host headers (DNS rebinding from a web page)
            allowed_hosts=[*LOOPBACK_NAMES, args.host] if loopback else None,
        )
    except VideolensError as err:
        sock.close()
        note(f"error: {err.one_line()}")
        return EXIT_USAGE
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    suffix = "/?token=…" if token else "/"
    print(f"videolens: serving {app.state.service.store.root} at http://{shown}:{args.port}"
          f"{suffix}  (Ctrl-C stops)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            server_header=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C / SIGINT, then re-raises it: a normal stop
        return EXIT_OK
    except SystemExit:
        note(f"error: the server on {args.host}:{args.port} could not start")
        return EXIT_USAGE
    finally:
        sock.close()
    return EXIT_OK
