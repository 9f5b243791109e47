"""`python -m deployai.testing serve`: run the DeployAI emulator on loopback until Ctrl+C.

The first line on stdout is the API base URL, for example `http://127.0.0.1:8787/v1`; point a client
at it with any `sk-` key (`DEPLOYAI_BASE_URL=... DEPLOYAI_API_KEY=sk-test`). uvicorn logs to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ._emulator import Emulator
from ._server import base_url_for, bind_socket, import_uvicorn, uvicorn_config, uvicorn_server


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """Add the options of `serve` to a parser (shared with the `deployai emulator` command)."""
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="the port, 0 for any free one (default 8787)")
    serve.add_argument(
        "--rate-limit", type=int, default=60, help="requests per key per window, 0 for no limit (default 60)"
    )
    serve.add_argument("--window-seconds", type=float, default=60.0, help="rate-limit window (default 60)")
    serve.add_argument("--token-latency", type=float, default=0.0, help="seconds between stream chunks (default 0)")
    serve.add_argument(
        "--allow-non-loopback", action="store_true", help="serve on a non-loopback host (it accepts any sk- key)"
    )
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deployai.testing", description="The local DeployAI emulator.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(commands.add_parser("serve", help="serve the emulator over HTTP on loopback until interrupted"))
    return parser


def _log_config(uvicorn: ModuleType) -> dict[str, Any]:
    # uvicorn's own logging setup, with its access log moved to stderr: stdout carries only the URL.
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    if sys.stdout is None:  # started with it closed (`>&-`): uvicorn's formatters would ask it for a terminal
        for formatter in config["formatters"].values():
            formatter["use_colors"] = False
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    return serve(_parser().parse_args(argv), "python -m deployai.testing serve")


def serve(args: argparse.Namespace, prog: str) -> int:
    """Serve the emulator with the options `add_serve_arguments` parsed, until Ctrl+C; returns the exit status.

    A setting it cannot use is reported as `<prog>: error: ...`, as argparse reports the others.
    """
    try:
        uvicorn = import_uvicorn()
        emulator = Emulator(
            rate_limit=args.rate_limit or None, window_seconds=args.window_seconds, token_latency=args.token_latency
        )
        sock = bind_socket(args.host, args.port, allow_non_loopback=args.allow_non_loopback)
    except (ModuleNotFoundError, ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    # uvicorn stops on Ctrl+C, then raises it again for us: it is the normal way out, and so is a
    # Ctrl+C that comes after the URL is printed but before uvicorn has taken Ctrl+C over.
    with sock, contextlib.suppress(KeyboardInterrupt):
        # The socket already listens, so the URL works from the moment it is printed. A reader of
        # stdout that went away (`serve | head -0`) takes nothing from the server itself.
        with contextlib.suppress(OSError, ValueError):
            print(base_url_for(sock), flush=True)
        server = uvicorn_server(uvicorn_config(emulator, log_level=args.log_level, log_config=_log_config(uvicorn)))
        server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
