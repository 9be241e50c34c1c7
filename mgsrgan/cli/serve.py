"""`mgsrgan serve [--host 127.0.0.1] [--port 8000] [--run RUN] [--scale 2 4]`: the web page and the HTTP API.

Loads the ensembles once (the shipped x2 and x4 by default, with the real-photo x<s>-real beside each where
shipped; or one run folder), then serves until Ctrl-C.
Binds to loopback unless --host says otherwise, with a warning when the server is reachable from other machines:
it has no authentication, and every request costs CPU seconds.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from mgsrgan.device import PRECISIONS
from mgsrgan.errors import UserError
from mgsrgan.infer.ensemble import SHIPPED_SCALES

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # loopback: only this machine can reach it


def build_parser() -> argparse.ArgumentParser:
    from mgsrgan.serve.app import ServeLimits
    from mgsrgan.serve.members import DEFAULT_TILE
    limits = ServeLimits()
    parser = argparse.ArgumentParser(prog="mgsrgan serve", description="Serve the upscaling web page (/) and HTTP "
                                     "API (/v1, documented at /docs) with an mgsrgan ensemble.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s: this machine "
                        "only; 0.0.0.0 exposes the server to the network, which has no authentication)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s)")
    parser.add_argument("--run", type=Path, help="serve this training run's members (pretrain, and gan where "
                        "present) instead of the shipped weights")
    parser.add_argument("--scale", type=int, nargs="+", choices=SHIPPED_SCALES, default=None,
                        help="shipped ensembles to load (default: all of them, x2 first; each scale's real-photo "
                             "ensemble, weights/x<scale>-real, too where it exists); with --run, its scale")
    parser.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="network passes' dtype, as inference.py (default auto: bf16 where native)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="tile size in LR pixels (default %(default)s): bounds memory, paces the progress bar")
    parser.add_argument("--max-upload-mb", type=float, default=limits.max_upload_bytes / 2**20,
                        help="largest request body in MiB (default %(default)s)")
    parser.add_argument("--max-pixels", type=int, default=limits.max_pixels,
                        help="largest input in pixels (default %(default)s); time and memory grow with it")
    parser.add_argument("--queue-size", type=int, default=limits.queue_size,
                        help="images queued or running at once; beyond it requests get 429 (default %(default)s)")
    parser.add_argument("--max-jobs", type=int, default=limits.max_jobs,
                        help="page images whose member outputs stay cached (default %(default)s)")
    parser.add_argument("--cache-mb", type=float, default=limits.cache_bytes / 2**20,
                        help="memory for those cached outputs, in MiB (default %(default)s; the newest image "
                             "always stays)")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    for name in ("max_upload_mb", "max_pixels", "queue_size", "max_jobs", "cache_mb"):
        if getattr(args, name) <= 0:
            print(f"error: --{name.replace('_', '-')} must be > 0", file=sys.stderr)
            return 2
    if args.tile < 0 or not 0 <= args.port <= 65535:
        print("error: --tile must be >= 0 and --port in 0..65535 (0: any free port)", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from mgsrgan.serve.app import ServeLimits, create_app
        from mgsrgan.serve.members import load_banks
        from mgsrgan.infer.ensemble import run_member_paths
        from mgsrgan.io.checkpoint import Side, read_meta
        if args.run is not None:
            run_scale = int(read_meta(run_member_paths(args.run, Side.PIXEL)[0])["arch"]["scale"])
            if args.scale and args.scale != [run_scale]:
                raise UserError(f"--scale {' '.join(map(str, args.scale))}, but {args.run} holds x{run_scale} members")
            scales = [run_scale]
        else:
            scales = args.scale or list(SHIPPED_SCALES)
        banks = load_banks(scales, run=args.run, device=args.device, precision=args.precision, tile=args.tile)
        limits = ServeLimits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                             queue_size=args.queue_size, max_jobs=args.max_jobs,
                             cache_bytes=int(args.cache_mb * 2**20))
        app = create_app(banks, limits)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for bank in banks:
        sides = ", ".join(f"{len(s.generators)} {name}" for name, s in bank.sides.items())
        print(f"x{bank.scale}{' real' if bank.real else ''}: {bank.source} ({sides} members)", file=sys.stderr)
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} exposes the server to other machines; it has no authentication and each "
              "upload costs CPU seconds (keep it on a trusted network, or behind a proxy that authenticates)",
              file=sys.stderr)
    try:  # bound here, so a port in use is one line, not uvicorn's log and exit
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving on http://{shown}:{sock.getsockname()[1]}  (page: /, API docs: /docs; Ctrl-C stops)",
          file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
