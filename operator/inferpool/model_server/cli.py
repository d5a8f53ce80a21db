"""`inferpool model-server`: the stand-in model server (see inferpool.model_server.server)."""

from __future__ import annotations

import argparse

from inferpool.model_server.server import ServerConfig, serve


def register(parser: argparse.ArgumentParser) -> None:
    defaults = ServerConfig()
    parser.add_argument("--model", default=defaults.model,
                        help="the model name it answers for (default: %(default)s)")
    parser.add_argument("--max-concurrency", type=_positive_int,
                        default=defaults.max_concurrency,
                        help="requests served at once; more wait (default: %(default)s)")
    parser.add_argument("--first-token-seconds", type=_non_negative,
                        default=defaults.first_token_s,
                        help="service time before the first token (default: %(default)s)")
    parser.add_argument("--per-token-seconds", type=_non_negative, default=defaults.per_token_s,
                        help="service time per generated token (default: %(default)s)")
    parser.add_argument("--warmup-seconds", type=_non_negative, default=defaults.warmup_s,
                        help="not ready (GET /health 503) for this long after start, as while "
                        "loading weights (default: %(default)s)")
    parser.add_argument("--host", default="0.0.0.0", help="default: %(default)s")
    parser.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    parser.set_defaults(func=_run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    serve(ServerConfig(model=args.model, max_concurrency=args.max_concurrency,
                       first_token_s=args.first_token_seconds, per_token_s=args.per_token_seconds,
                       warmup_s=args.warmup_seconds), args.host, args.port)
    return 0
