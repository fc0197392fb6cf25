"""`cnnlab serve [RUN...]`: the web explorer, a local page where you draw a digit and watch every layer respond."""

from __future__ import annotations

from cnnlab.commands import add_command
from cnnlab.errors import ConfigError


def add_parser(subparsers):
    p = add_command(subparsers, "serve", "Start the web explorer (draw a digit, see every layer respond).", [
        "cnnlab serve                                  # every run in runs/, plus untrained models",
        "cnnlab serve runs/simple-cnn-mnist-20261125-101500 --port 8080",
        "cnnlab serve --runs-dir /tmp/runs --host 0.0.0.0   # reachable from other machines: think first",
    ], run)
    p.add_argument("runs", metavar="RUN", nargs="*", help="run folders to show (default: every run in --runs-dir)")
    p.add_argument("--runs-dir", help="folder of run folders (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    return p


def run(args) -> int:
    import uvicorn

    from cnnlab.web import create_app

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 0 to 65535")
    app = create_app(args.runs, args.runs_dir)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    print(f"cnnlab explorer: http://{args.host}:{args.port}/  (API schema at /openapi.json; Ctrl-C stops it)")
    try:
        server.run()
    except OSError as err:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err})") from None
    return 0
