"""``python -m engine serve``: the HTTP API under uvicorn.

One Studio per process. With ``--workers N`` uvicorn starts N processes, each building its app
from the environment (the flags are handed over as STUDIO_* variables); each worker then has its
own batch queue and its own metrics, so one process (the default) batches best and reports
complete metrics.
"""

from __future__ import annotations

import argparse
import logging
import os

from engine.cli import _studio, command
from engine.cli import args as cliargs
from engine.errors import InputError, ModelNotConvertedError
from engine.manifest import VARIANT_CHOICES

log = logging.getLogger(__name__)


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=cliargs.port, default=8000, help="port to bind (0: any free port)")
    p.add_argument("--model", help="default model, warmed up at start (default: STUDIO_API_MODEL or the registry's)")
    p.add_argument("--variant", choices=VARIANT_CHOICES, help="variant of the default model")
    p.add_argument("--provider", help="auto, cpu, cuda, tensorrt, ... (default: STUDIO_API_PROVIDER, STUDIO_PROVIDER)")
    p.add_argument("--workers", type=cliargs.int_range(1, 64), default=1,
                   help="server processes (default 1; see the module notes)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--keep-alive", type=cliargs.positive_float, default=75.0,
                   help="seconds an idle client connection stays open (default 75)")


def _check_default_model(studio, model: str, variant: str | None) -> None:
    """Fail fast on a model or variant that cannot exist; a model not converted yet only warns,
    because a converter (another container) may be writing it right now."""
    try:
        spec = studio.registry.require_converted(model)
    except ModelNotConvertedError as exc:
        log.warning("%s %s; /ready answers 503 until the model is there", exc.message, exc.hint)
        return
    if variant and variant not in spec.manifest.variants:
        raise InputError(f"Model {model!r} has no {variant!r} variant (converted: {', '.join(spec.manifest.variants)}).",
                         f"convert it: python -m engine convert {model} --variants {variant} --force")


def check_port_free(host: str, port: int) -> None:
    """Bind the address once before anything loads: a busy port was uvicorn's bare '[Errno 98] address already in
    use' (exit 3) after the model had been checked; now one message with what to do (exit 2)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} is not an address of this machine: {exc.strerror}.",
                         "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no hold-up
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"Port {port} on {host} is already in use.",
                                 "stop what listens there, or choose another with --port") from None
            raise InputError(f"Cannot listen on {host}:{port}: {exc.strerror}.",
                             "choose another --port (ports below 1024 need root) or --host") from None


@command("serve", "serve the HTTP API (OpenAI-compatible /v1/embeddings, /health, /ready, /metrics)", _serve_args)
def cmd_serve(args: argparse.Namespace) -> tuple[object, str]:
    import uvicorn

    from engine import providers
    from engine.server.app import create_app
    from engine.server.config import load_api_settings

    if args.workers < 1:
        raise InputError("--workers must be at least 1.", "leave --workers out for one process")
    check_port_free(args.host, args.port)
    studio = _studio(args)
    api = load_api_settings(model=args.model, variant=args.variant, provider=args.provider)
    model = api.model or studio.registry.default_model
    _check_default_model(studio, model, api.variant)
    # a keep-alive longer than clients' own (httpx, hence the openai client: 5 s) means the client
    # always closes first; with uvicorn's default of 5 s both sides time out together and a request
    # sent on a connection the server is closing fails (seen here as httpx.ReadError under load)
    options = {"host": args.host, "port": args.port, "log_config": None, "access_log": not args.no_access_log,
               "timeout_graceful_shutdown": 10, "timeout_keep_alive": args.keep_alive}
    if args.workers == 1:
        uvicorn.run(create_app(studio, api), **options)
    else:
        # the workers are fresh processes: hand the flags over through their environment
        overrides = {"STUDIO_DATA_DIR": str(studio.settings.data_dir), "STUDIO_API_MODEL": model,
                     "STUDIO_API_VARIANT": api.variant, "STUDIO_API_PROVIDER": api.provider}
        if studio.settings.intra_op_threads is None:
            # N processes that each use every core would fight over them: share the cores out
            overrides["STUDIO_INTRA_OP_THREADS"] = str(max(1, providers.cpu_count() // args.workers))
            log.info("%d workers: %s ONNX Runtime threads each", args.workers, overrides["STUDIO_INTRA_OP_THREADS"])
        os.environ.update({k: v for k, v in overrides.items() if v})
        uvicorn.run("engine.server.app:create_app_from_env", factory=True, workers=args.workers, **options)
    return {"host": args.host, "port": args.port, "stopped": True}, "server stopped"
