"""A bounded load test of `mgsrgan serve` on loopback: N requests from C concurrent clients, mixed valid and
malformed uploads; every request must be answered (200, 4xx or 429), none lost, the server's RSS bounded. The test
is `slow` (the shipped x2 ensemble, 200 requests); the table the README quotes comes from this file as a script:

    python tests/test_serve_load.py                      # 200 requests, 16 clients -> tests/results/serve_load.md
    python tests/test_serve_load.py --requests 50 --clients 4 --out-dir /tmp/load

Starts `mgsrgan serve --port 0` as a child process (its own process, as users run it), reads the port from its
first lines, fires the requests from client threads (stdlib http.client: one connection per request), samples the
server's RSS from /proc every 50 ms, and writes serve_load.json and serve_load.md to --out-dir.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("valid", "valid_gan", "not_an_image", "truncated", "bad_strategy", "no_image")  # cycled in this order


def png(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], image: bytes | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if image is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(port: int, kind: str, image: bytes) -> dict:
    fields, body_image = {}, image
    if kind == "valid_gan":
        fields["checkpoint"] = "gan"
    elif kind == "not_an_image":
        body_image = b"this is text, not pixels"
    elif kind == "truncated":
        body_image = image[: len(image) // 3]
    elif kind == "bad_strategy":
        fields["strategy"] = "avg"
    elif kind == "no_image":
        body_image = None
    body, content_type = multipart(fields, body_image)
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", "/v1/upscale", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        payload = response.read()
        status, error = response.status, None
        if status != 200:
            error = json.loads(payload).get("error")  # every non-200 must be our JSON
        conn.close()
    except Exception as exc:  # noqa: BLE001 - a lost request is what this test counts
        status, error = None, f"{type(exc).__name__}: {exc}"
    return {"kind": kind, "status": status, "seconds": time.perf_counter() - start, "error": error}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="side of the valid uploads in pixels (default 64)")
    parser.add_argument("--queue-size", type=int, default=4, help="the server's --queue-size (default 4)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "tests" / "results")
    args = parser.parse_args(argv)
    server = subprocess.Popen([sys.executable, "-m", "mgsrgan.cli.main", "serve", "--port", "0", "--scale", "2",
                               "--queue-size", str(args.queue_size)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    port = None
    for line in server.stderr:
        match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        print("error: the server did not start", file=sys.stderr)
        return 1
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep draining its log
    rss, done = [rss_mib(server.pid)], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            rss.append(rss_mib(server.pid))
    threading.Thread(target=sample, daemon=True).start()
    image = png(args.size, 0)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        results = list(pool.map(lambda i: request(port, KINDS[i % len(KINDS)], image), range(args.requests)))
    wall = time.perf_counter() - start
    done.set()
    server.terminate()
    server.wait(timeout=30)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    lost = [r for r in results if r["status"] is None]
    ok = [r["seconds"] for r in results if r["status"] == 200]
    all_s = sorted(r["seconds"] for r in results)
    summary = {
        "requests": args.requests, "clients": args.clients, "upload_px": args.size, "queue_size": args.queue_size,
        "statuses": statuses, "lost": len(lost), "lost_examples": [r["error"] for r in lost[:3]],
        "wall_s": wall, "throughput_rps": args.requests / wall, "upscaled_per_s": len(ok) / wall,
        "p50_s": statistics.median(all_s), "p95_s": all_s[int(0.95 * (len(all_s) - 1))],
        "p50_200_s": statistics.median(ok) if ok else None,
        "p95_200_s": sorted(ok)[int(0.95 * (len(ok) - 1))] if ok else None,
        "rss_start_mib": rss[0], "rss_max_mib": max(rss), "rss_end_mib": rss[-1], "cpus": os.cpu_count(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "serve_load.json").write_text(json.dumps(summary, indent=2) + "\n")
    status_text = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    (args.out_dir / "serve_load.md").write_text(
        f"# `mgsrgan serve` under load ({time.strftime('%Y-%m-%d')})\n\n"
        f"`python tests/test_serve_load.py --requests {args.requests} --clients {args.clients}`: {args.requests} "
        f"POST /v1/upscale from {args.clients} concurrent clients on loopback, the shipped x2 ensemble, "
        f"{args.size} px uploads, kinds cycled: {', '.join(KINDS)}; server --queue-size {args.queue_size}, "
        f"{os.cpu_count()} CPU cores.\n\n"
        "| measure | value |\n| --- | ---: |\n"
        f"| answers by status | {status_text} |\n| lost (no answer) | {len(lost)} |\n"
        f"| wall time | {wall:.1f} s |\n| throughput (all answers) | {summary['throughput_rps']:.1f} req/s |\n"
        f"| upscaled images | {summary['upscaled_per_s']:.2f} /s |\n"
        f"| latency p50 / p95, all | {summary['p50_s'] * 1000:.0f} / {summary['p95_s'] * 1000:.0f} ms |\n"
        f"| latency p50 / p95, 200s | {(summary['p50_200_s'] or 0) * 1000:.0f} / "
        f"{(summary['p95_200_s'] or 0) * 1000:.0f} ms |\n"
        f"| server RSS start / max / end | {rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f} MiB |\n")
    print(json.dumps(summary, indent=2))
    return 0 if not lost else 1



@pytest.mark.slow
def test_every_request_of_a_burst_is_answered_and_none_lost(tmp_path):
    pytest.importorskip("fastapi", reason="mgsrgan serve needs the serve extra (pip install -e .[serve])")
    assert main(["--out-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "serve_load.json").read_text())
    assert summary["lost"] == 0, summary["lost_examples"]
    assert sum(summary["statuses"].values()) == summary["requests"]


if __name__ == "__main__":
    raise SystemExit(main())
