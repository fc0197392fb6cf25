"""`cnnlab serve [RUN...]`: the web explorer, a local page where you draw a digit and watch every layer respond."""

from __future__ import annotations

import socket

from cnnlab.commands import add_command
from cnnlab.commands.options import add_model_file_options, own_model
from cnnlab.errors import ConfigError


def add_parser(subparsers):
    p = add_command(subparsers, "serve", "Start the web explorer (draw a digit, see every layer respond).", [
        "cnnlab serve                 # every run in runs/, plus untrained models",
        "cnnlab serve runs/simple-cnn-mnist-20261125-101500 --port 8080",
        "cnnlab serve --runs-dir /tmp/runs --host 0.0.0.0 --allowed-hosts lab.local  # the network sees it",
        "cnnlab serve runs/photos-run --allow-folder ~/photos  # show that folder run's test photos",
        "cnnlab serve --model net.py:Net --weights net.safetensors  # your own model, beside the runs",
    ], run)
    add_model_file_options(p, "run folders to show (default: every run in --runs-dir)", many=True)
    p.add_argument("--runs-dir", help="folder of run folders (default runs/ or $CNNLAB_RUNS)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--allowed-hosts", metavar="NAME,...", default="",
                   help="more names the page may be reached by (the Host header); 127.0.0.1, localhost, [::1] "
                   "and --host always are; '*': any (turns off the DNS-rebinding check)")
    p.add_argument("--allow-folder", metavar="DIR", action="append", default=[],
                   help="a folder of images whose runs' test images may be read (repeatable); a run's "
                   "folder:PATH dataset is shown, not read, unless it lies in one")
    p.add_argument("--body-timeout", type=float, metavar="SECONDS",
                   help="a request whose body stops arriving for this long is answered 408 and let go (default 15; "
                   "longer for photos sent over a slow link)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads per forward pass (default 1: requests already run side by side, one per core)")
    return p


def allowed_hosts(host: str, extra: str) -> list[str]:
    """The Host header values the server answers: loopback, the address it binds, and the names given."""
    from cnnlab.web.app import LOOPBACK_HOSTS, host_name

    names = [name.strip() for name in extra.split(",") if name.strip()]
    for name in names:
        if name != "*" and (host_name(name) is None or any(c in name for c in "*/@ ")):
            raise ConfigError(f"--allowed-hosts {name}: expected a host name or address (lab.local, 10.0.0.5, "
                              "[fe80::1]) or '*'")
    return [*LOOPBACK_HOSTS, f"[{host}]" if ":" in host else host, *names]


MAX_CONNECTIONS = 64


def return_freed_memory() -> None:
    """Make glibc give large freed buffers back to the system. Its defaults keep them per thread (one arena per
    thread of the server's pool, each holding on to the largest image it once decoded), so that ten photos in a
    row would cost ten photos' memory for good. Elsewhere (macOS, musl) the defaults already return them."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold, m_arena_max = -3, -8  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 1 << 20)  # buffers of 1 MiB or more: mmap'd, and unmapped when freed
    libc.mallopt(m_arena_max, 2)


def listen(host: str, port: int) -> socket.socket:
    """A bound socket, listening, so that a busy port is a one-line error here (Uvicorn would log and exit) and
    port 0 gets a free port whose number the URL below can show. It listens before the URL is printed: a client
    that connects as soon as it reads the URL waits in the queue until Uvicorn accepts it, where a socket only
    bound refused it (the browser test that opens the page first failed so, once)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as err:
        raise ConfigError(f"--host {host}: cannot resolve it ({err.strerror or err})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen()
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    return sock


def run(args) -> int:
    import torch

    from cnnlab.errors import import_optional

    if args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: expected 1 or more")
    if args.body_timeout is not None and not 0 < args.body_timeout <= 3600:
        raise ConfigError(f"--body-timeout {args.body_timeout:g}: expected more than 0 and at most 3600 seconds")
    # Imported here, by name: FastAPI and Uvicorn are the `explorer` extra; without them this is one line.
    create_app = import_optional("cnnlab.web", "cnnlab serve").create_app
    uvicorn = import_optional("uvicorn", "cnnlab serve")
    # The server computes several requests at once (one per core); each also spreading over every core would make
    # the threads wait on each other, which on a busy machine costs a drawing's answer tens of milliseconds.
    torch.set_num_threads(args.threads)
    return_freed_memory()
    own = own_model(args)
    timeout = {} if args.body_timeout is None else {"body_timeout": args.body_timeout}
    app = create_app(args.run, args.runs_dir, [own] if own else [],
                     hosts=allowed_hosts(args.host, args.allowed_hosts), folders=args.allow_folder, **timeout)
    sock = listen(args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cnnlab explorer: http://{host}:{sock.getsockname()[1]}/ (Ctrl-C stops it; API: /openapi.json)", flush=True)
    # At most MAX_CONNECTIONS open connections (more get 503 at once), so that clients sending their headers
    # slowly cannot pile up; idle keep-alive connections close after 5 s; a stalled body gets 408 (cnnlab.web.app).
    # log_config=None: uvicorn's own logging setup (logging.config.dictConfig) would close every handler the
    # process has, a notebook's or a test runner's; its warnings reach standard error through the root logger.
    uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None, limit_concurrency=MAX_CONNECTIONS,
                                  timeout_keep_alive=5)).run(sockets=[sock])
    return 0
