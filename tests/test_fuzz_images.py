"""Fuzzed image input: random and mutated files through every decoder path, none of which may crash, hang or
allocate beyond what the pixel limit implies. 300 cases in the default suite, the full 10,000 with `-m slow`; each
run in a process of its own (this file as a script), so its peak memory is its own:

    python tests/test_fuzz_images.py                    # 10,000 cases; writes tests/results/fuzz_images.md
    python tests/test_fuzz_images.py --compare          # + png16 vs Pillow / imageio / pypng (when installed)
    python tests/test_fuzz_images.py --cases 300 --json --no-write   # what the default suite runs
    python tests/test_fuzz_images.py --case 1234 --keep /tmp/c.png  # replay one case, keep its file

Seeds: small valid files made here, one per kind the decoders meet: PNG (RGB, RGBA, gray, gray + alpha, palette,
palette with transparency, bilevel, 16-bit gray, interlaced, 16-bit RGB and RGBA written by mgsrgan.io.png16, with
iCCP and eXIf), JPEG (RGB, gray, CMYK, progressive, EXIF-rotated), WebP (lossy, lossless with alpha, animated),
TIFF (raw, LZW, deflate, 16-bit gray, CMYK, float, two pages), BMP (RGB, palette), GIF (animated, transparent), PPM,
16-bit PGM, and headers that claim huge sizes (PNG 8- and 16-bit, JPEG, GIF, BMP, TIFF, 16-bit RGB PNGs one pixel
thin). Mutations (one to three per case, seeded by the case number alone, so any case replays): truncation, byte
flips, inserted, deleted and repeated spans, splices of two seeds, random bytes behind a format's magic, and
PNG-aware ones with the CRC recomputed so they reach past the checksum: chunk lengths, IHDR fields (sides up to
2^32 - 1, bit depth, colour type, interlace), IDAT data replaced by zlib streams of the wrong length, with bad filter
bytes or random rows, chunks dropped, repeated or moved, unknown critical chunks, bad iCCP/eXIf/zTXt.

Each case is written to a file and read by mgsrgan.io.images.read_image (the reader of inference, evaluation and
training data) with max_pixels = PIXEL_LIMIT and, when its header says 16-bit RGB/RGBA PNG within that limit, by
mgsrgan.io.png16.read_png16 as well. A case passes when each reader gives a finite (3, h, w) float32 tensor in
[0, 1] with h * w <= the limit (read_png16: an (h, w, 3|4) uint16 array), or raises one of mgsrgan's UserError
subclasses with a one-line message naming the file. A failure is anything else: another exception (a traceback for
the user), a case over MAX_SECONDS, or the process's peak RSS growing past MEMORY_BOUND.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mgsrgan.errors import UserError
from mgsrgan.io import png16
from mgsrgan.io.images import read_image

ROOT = Path(__file__).resolve().parents[1]

RESULT = ROOT / "tests" / "results" / "fuzz_images.md"
CASES = 10_000  # the count
SEED = 13  # issue 13
PIXEL_LIMIT = 1 << 20  # max_pixels of every read: 1 Mpx, so a decode at the limit costs well under a second
MAX_SECONDS = 5.0  # a case slower than this is a hang: CPU seconds of this process, so a machine shared with a
#                   training job does not fail cases (wall seconds are reported too)
HARD_TIMEOUT = 30.0  # CPU seconds (SIGPROF): past this the case is recorded as a hang and the run goes on
BYTES_PER_PIXEL = 96  # what one decode may hold at once, per pixel of the limit: Pillow's 4 B/px image and its RGB
#                       copy, float64 arrays for the conversion (24 B/px, twice), the float32 tensor (12 B/px)
SLACK_BYTES = 192 << 20  # png16's 64 MiB unfiltering band, zlib and Pillow buffers, allocator fragmentation
MEMORY_BOUND = BYTES_PER_PIXEL * PIXEL_LIMIT + SLACK_BYTES  # peak RSS growth allowed over the whole run
KIB = 1024  # ru_maxrss is in KiB on Linux


# ---- seeds ---------------------------------------------------------------------------------------------------------

def pattern(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """(h, w, channels) uint8: gradients plus noise, so encoders use several filters and modes."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 7 + y * 3 + c * 50) % 256 for c in range(channels)], axis=-1).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 12.0, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def saved(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))


def png_by_hand(width: int, height: int, bit_depth: int, color_type: int, rows: bytes, *, interlace: int = 0,
                extra: bytes = b"") -> bytes:
    """A PNG with the given IHDR and already-filtered `rows` (compressed here); `extra` chunks go before IDAT."""
    ihdr = struct.pack(png16.IHDR_FORMAT, width, height, bit_depth, color_type, 0, 0, interlace)
    return (png16.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def png16_file(pixels: np.ndarray, **kwargs) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.png"
        png16.write_png16(path, pixels, **kwargs)
        return path.read_bytes()


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def with_chunk_after_ihdr(data: bytes, kind: bytes, body: bytes) -> bytes:
    ihdr_end = len(png16.PNG_SIGNATURE) + 8 + png16.IHDR_LENGTH + 4
    return data[:ihdr_end] + chunk(kind, body) + data[ihdr_end:]


def patched(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def make_seeds() -> list[tuple[str, str, bytes]]:
    """(name, extension, bytes) of every seed file."""
    rgb, rgba = pattern(12, 16, 3), pattern(12, 16, 4, seed=1)
    gray = pattern(12, 16, 1, seed=2)[..., 0]
    rgb_img, rgba_img, gray_img = Image.fromarray(rgb), Image.fromarray(rgba), Image.fromarray(gray)
    gray16 = Image.fromarray((gray.astype(np.uint16) * 257 + 3).astype(np.uint16))
    palette = rgb_img.quantize(16)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    wide16 = (pattern(10, 14, 3, seed=3).astype(np.uint16) * 251 + 7).astype(np.uint16)
    wide16a = (pattern(9, 11, 4, seed=4).astype(np.uint16) * 253).astype(np.uint16)
    cmyk = Image.fromarray(pattern(12, 16, 4, seed=5), mode="CMYK")
    frames = [rgb_img, Image.fromarray(pattern(12, 16, 3, seed=6))]
    seeds = [
        ("png-rgb", ".png", saved(rgb_img, "PNG")),
        ("png-rgba", ".png", saved(rgba_img, "PNG")),
        ("png-gray", ".png", saved(gray_img, "PNG")),
        ("png-la", ".png", saved(Image.merge("LA", (gray_img, gray_img)), "PNG")),
        ("png-palette", ".png", saved(palette, "PNG")),
        ("png-palette-trns", ".png", saved(transparent, "PNG", transparency=3)),
        ("png-bilevel", ".png", saved(gray_img.convert("1"), "PNG")),
        ("png-gray16", ".png", saved(gray16, "PNG")),
        # Adam7 3x2: passes 1, 4 and 6 hold one pixel each, pass 7 a row of 3 (each row after its filter byte)
        ("png-interlaced", ".png", png_by_hand(3, 2, 8, 2, bytes(3 * (1 + 3) + 1 + 9), interlace=1)),
        ("png16-interlaced", ".png", png_by_hand(3, 2, 16, 2, bytes(3 * (1 + 6) + 1 + 18), interlace=1)),
        ("png16-rgb", ".png", png16_file(wide16)),
        ("png16-rgba-icc", ".png", png16_file(wide16a, icc_profile=b"fake ICC profile " * 8)),
        ("png16-rgb-exif", ".png", with_chunk_after_ihdr(png16_file(wide16), b"eXIf", exif_bytes(6))),
        ("jpeg-rgb", ".jpg", saved(rgb_img, "JPEG", quality=90)),
        ("jpeg-gray", ".jpg", saved(gray_img, "JPEG")),
        ("jpeg-cmyk", ".jpg", saved(cmyk, "JPEG")),
        ("jpeg-progressive-exif", ".jpg", saved(rgb_img, "JPEG", progressive=True, exif=exif_bytes(8))),
        ("webp-lossy", ".webp", saved(rgb_img, "WEBP", quality=80)),
        ("webp-lossless-alpha", ".webp", saved(rgba_img, "WEBP", lossless=True)),
        ("webp-animated", ".webp", saved(frames[0], "WEBP", save_all=True, append_images=frames[1:])),
        ("tiff-raw", ".tif", saved(rgb_img, "TIFF")),
        ("tiff-lzw", ".tif", saved(rgba_img, "TIFF", compression="tiff_lzw")),
        ("tiff-deflate", ".tiff", saved(rgb_img, "TIFF", compression="tiff_adobe_deflate")),
        ("tiff-gray16", ".tif", saved(gray16, "TIFF")),
        ("tiff-cmyk", ".tif", saved(cmyk, "TIFF")),
        ("tiff-float", ".tif", saved(gray_img.convert("F"), "TIFF")),
        ("tiff-pages", ".tif", saved(frames[0], "TIFF", save_all=True, append_images=frames[1:])),
        ("bmp-rgb", ".bmp", saved(rgb_img, "BMP")),
        ("bmp-palette", ".bmp", saved(palette, "BMP")),
        ("gif-animated", ".gif", saved(frames[0].quantize(8), "GIF", save_all=True, duration=50,
                                       append_images=[f.quantize(8) for f in frames[1:]], transparency=0)),
        ("ppm", ".ppm", saved(rgb_img, "PPM")),
        ("pgm16", ".pgm", saved(gray16, "PPM")),
    ]
    by_name = {name: data for name, _, data in seeds}
    huge = (1 << 31) - 1  # the PNG maximum side
    for name, width, height, depth, color in (("png-huge", 50_000, 50_000, 8, 2), ("png16-huge", huge, huge, 16, 6)):
        seeds.append((name, ".png", png_by_hand(width, height, depth, color, bytes(4096))))
    thin = 262_144  # 0.26 Mpx, within the limit: a decoding cost that grows with width + height, not with pixels
    paeth = bytes([png16.FILTER_PAETH])
    side = math.isqrt(PIXEL_LIMIT)  # files that decode to the full limit: what the memory bound is about
    seeds += [("png-at-limit", ".png", png_by_hand(side, side, 8, 2, (paeth + bytes(side * 3)) * side)),
              ("png16-at-limit", ".png", png_by_hand(side, side, 16, 2, (paeth + bytes(side * 6)) * side)),
              ("png16-thin-wide", ".png", png_by_hand(thin, 1, 16, 2, paeth + bytes(thin * 6))),
              ("png16-thin-tall", ".png", png_by_hand(1, thin, 16, 2, (paeth + bytes(6)) * thin)),
              ("png-rgb-huge-ihdr", ".png", patched_ihdr(by_name["png-rgb"], width=1 << 16, height=1 << 16)),
              ("jpeg-huge", ".jpg", patched(by_name["jpeg-rgb"], by_name["jpeg-rgb"].find(b"\xff\xc0") + 5, ">HH",
                                            65_000, 65_000)),
              ("gif-huge", ".gif", patched(by_name["gif-animated"], 6, "<HH", 65_535, 65_535)),
              ("bmp-huge", ".bmp", patched(by_name["bmp-rgb"], 18, "<ii", 100_000, -100_000)),
              ("tiff-huge", ".tif", tiff_with_size(by_name["tiff-raw"], 1 << 20, 1 << 20))]
    return seeds


def tiff_with_size(data: bytes, width: int, height: int) -> bytes:
    """A little-endian TIFF with its ImageWidth (256) and ImageLength (257) entries set to LONG values."""
    out = bytearray(data)
    (ifd,) = struct.unpack_from("<I", out, 4)
    (count,) = struct.unpack_from("<H", out, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack_from("<H", out, entry)[0]
        if tag in (256, 257):
            struct.pack_into("<HHII", out, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(out)


def patched_ihdr(data: bytes, **fields: int) -> bytes:
    """`data` with IHDR fields replaced and its CRC recomputed (names as in png16.PngHeader, plus compression and
    filter_method)."""
    start = len(png16.PNG_SIGNATURE) + 8
    names = ("width", "height", "bit_depth", "color_type", "compression", "filter_method", "interlace")
    values = dict(zip(names, struct.unpack(png16.IHDR_FORMAT, data[start:start + png16.IHDR_LENGTH])))
    values.update(fields)
    body = struct.pack(png16.IHDR_FORMAT, *(v & (0xFFFFFFFF if i < 2 else 0xFF) for i, v in
                                            enumerate(values[n] for n in names)))
    return data[:start - 8] + chunk(b"IHDR", body) + data[start + png16.IHDR_LENGTH + 4:]


# ---- mutations -----------------------------------------------------------------------------------------------------

MAGICS = (png16.PNG_SIGNATURE, b"\xff\xd8\xff\xe0", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*",
          b"BM", b"GIF89a", b"P6\n", b"P5\n16 16\n65535\n")
INTERESTING = (0, 1, 2, 7, 255, 256, 65_535, 65_536, 1 << 20, (1 << 31) - 1, 1 << 31, (1 << 32) - 1)


def split_chunks(data: bytes) -> list[tuple[int, bytes, bytes]] | None:
    """[(offset, type, body)] of a PNG's chunks while they parse; None when `data` is not a PNG."""
    if not data.startswith(png16.PNG_SIGNATURE):
        return None
    chunks, pos = [], len(png16.PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            break
        chunks.append((pos, kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def join_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return png16.PNG_SIGNATURE + b"".join(chunk(kind, body) for kind, body in chunks)


def mutate(rng: np.random.Generator, data: bytes, seeds: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """One mutation of `data`, chosen by `rng`; returns the bytes and a short description."""
    n = len(data)
    chunks = split_chunks(data)
    kinds = ["truncate", "flip", "insert", "delete", "repeat", "splice", "magic"]
    if chunks:
        kinds += ["png-length", "png-body", "png-ihdr", "png-ihdr", "png-idat", "png-idat", "png-chunks"]
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "truncate":
        cut = int(rng.integers(0, max(n, 1)))
        return data[:cut], f"truncate at {cut}"
    if kind == "flip":
        out = bytearray(data)
        count = int(rng.integers(1, 9))
        for _ in range(count):
            if out:
                out[int(rng.integers(len(out)))] = int(rng.integers(256))
        return bytes(out), f"flip {count} bytes"
    if kind == "insert":
        at, size = int(rng.integers(0, n + 1)), int(rng.integers(1, 64))
        return data[:at] + rng.bytes(size) + data[at:], f"insert {size} at {at}"
    if kind == "delete":
        at = int(rng.integers(0, max(n, 1)))
        size = int(rng.integers(1, 64))
        return data[:at] + data[at + size:], f"delete {size} at {at}"
    if kind == "repeat":
        at = int(rng.integers(0, max(n, 1)))
        size, times = int(rng.integers(1, 256)), int(rng.integers(2, 50))
        return data[:at] + data[at:at + size] * times + data[at + size:], f"repeat {size} x{times} at {at}"
    if kind == "splice":
        other = seeds[int(rng.integers(len(seeds)))][2]
        a, b = int(rng.integers(0, n + 1)), int(rng.integers(0, len(other) + 1))
        return data[:a] + other[b:], f"splice at {a} with another seed from {b}"
    if kind == "magic":
        magic = MAGICS[int(rng.integers(len(MAGICS)))]
        return magic + rng.bytes(int(rng.integers(0, 2048))), f"random bytes behind {magic[:8]!r}"
    parts = [(kind_, body) for _, kind_, body in chunks]
    if not parts:
        return data[:8], "png signature only"
    index = int(rng.integers(len(parts)))
    if kind == "png-length":  # the length field is outside the CRC: no recompute needed to reach the parser
        offset = chunks[index][0]
        value = int(rng.choice(INTERESTING + (len(chunks[index][2]) + 1, max(len(chunks[index][2]) - 1, 0))))
        return patched(data, offset, ">I", value), f"chunk {chunks[index][1]!r} length -> {value}"
    if kind == "png-body":
        kind_, body = parts[index]
        body = bytearray(body)
        for _ in range(int(rng.integers(1, 5))):
            if body:
                body[int(rng.integers(len(body)))] = int(rng.integers(256))
        parts[index] = (kind_, bytes(body))
        return join_chunks(parts), f"chunk {kind_!r} body bytes changed, CRC fixed"
    if kind == "png-ihdr":
        field = ("width", "height", "bit_depth", "color_type", "compression", "filter_method",
                 "interlace")[int(rng.integers(7))]
        value = (int(rng.choice(INTERESTING)) if field in ("width", "height")
                 else int(rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 255))))
        if parts[0][0] != b"IHDR" or len(parts[0][1]) != png16.IHDR_LENGTH:
            return data, "no IHDR to change"
        return patched_ihdr(data, **{field: value}), f"IHDR {field} -> {value}, CRC fixed"
    if kind == "png-idat":
        header = parts[0][1] if parts[0][0] == b"IHDR" and len(parts[0][1]) == png16.IHDR_LENGTH else None
        width, height, depth, color = struct.unpack(">IIBB", header[:10]) if header else (4, 4, 8, 2)
        samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 3)
        row = 1 + (width * samples * depth + 7) // 8
        expected = min(row * height, 1 << 22)
        choice = int(rng.integers(5))
        if choice == 0:
            raw, what = rng.bytes(expected), "random bytes of the expected size (filter bytes too)"
        elif choice == 1:
            rows = np.frombuffer(rng.bytes(expected), dtype=np.uint8).copy()
            rows[::max(row, 1)] = rng.integers(0, 5, size=rows[::max(row, 1)].shape)
            raw, what = rows.tobytes(), "random rows with valid filter bytes"
        elif choice == 2:
            raw, what = rng.bytes(int(rng.integers(0, max(expected, 1)))), "too few bytes"
        elif choice == 3:
            raw, what = bytes(expected + int(rng.integers(1, 4096))), "too many bytes (zeros)"
        else:
            raw, what = bytes(expected), "zeros (filter None)"
        compressed = zlib.compress(raw, 6)
        if rng.integers(4) == 0:
            compressed = compressed[:int(rng.integers(0, len(compressed) + 1))]
            what += ", stream cut"
        others = [p for p in parts if p[0] != b"IDAT"]
        at = next((i for i, p in enumerate(others) if p[0] == b"IEND"), len(others))
        others[at:at] = [(b"IDAT", compressed)]
        return join_chunks(others), f"IDAT replaced: {what}"
    # png-chunks: drop, repeat, move or add
    action = int(rng.integers(4))
    if action == 0:
        kind_ = parts.pop(index)[0]
        return join_chunks(parts), f"chunk {kind_!r} dropped"
    if action == 1:
        parts.insert(index, parts[index])
        return join_chunks(parts), f"chunk {parts[index][0]!r} repeated"
    if action == 2:
        moved = parts.pop(index)
        parts.insert(int(rng.integers(len(parts) + 1)), moved)
        return join_chunks(parts), f"chunk {moved[0]!r} moved"
    extra = [(b"ABCD", rng.bytes(8)), (b"PLTE", rng.bytes(int(rng.integers(0, 800)))),
             (b"tRNS", rng.bytes(int(rng.integers(0, 300)))), (b"iCCP", b"x\0\0" + rng.bytes(40)),
             (b"eXIf", b"MM\0*" + rng.bytes(60)), (b"zTXt", b"k\0\0" + zlib.compress(bytes(4 << 20))),
             (b"sBIT", rng.bytes(4)), (b"gAMA", rng.bytes(4))][int(rng.integers(8))]
    parts.insert(max(1, index), extra)
    return join_chunks(parts), f"chunk {extra[0]!r} inserted"


def make_case(case: int, seeds: list[tuple[str, str, bytes]], seed: int = SEED) -> tuple[str, str, bytes, str]:
    """(seed name, extension, bytes, what was done) of case `case`: a pure function of (seed, case)."""
    rng = np.random.default_rng([seed, case])
    if case % 50 == 0:  # a few pure-noise files, under any image extension
        ext = (".png", ".jpg", ".webp", ".tif", ".bmp", ".gif", ".ppm")[int(rng.integers(7))]
        return "noise", ext, rng.bytes(int(rng.integers(0, 4096))), "random bytes"
    name, ext, data = seeds[int(rng.integers(len(seeds)))]
    steps = []
    for _ in range(int(rng.integers(1, 4))):
        data, what = mutate(rng, data, seeds)
        steps.append(what)
    if rng.integers(10) == 0:  # the extension lies now and then: decoders go by content
        ext = (".png", ".jpg", ".tif")[int(rng.integers(3))]
    return name, ext, data, "; ".join(steps)


# ---- running -------------------------------------------------------------------------------------------------------

class CaseTimeout(Exception):
    """Raised by SIGPROF in a case that used more than HARD_TIMEOUT CPU seconds."""


def _alarm(signum, frame):
    raise CaseTimeout(f"over {HARD_TIMEOUT:.0f} CPU s")


def check_read_image(path: Path) -> str:
    """'ok' or 'refused'; AssertionError (a failure) for a bad result or a refusal that is not one line naming the
    file. Other exceptions propagate (failures too)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tensor, _ = read_image(path, max_pixels=PIXEL_LIMIT)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and str(path) in message, f"refusal not one line naming the file: {message!r}"
        return "refused"
    assert not caught, f"warning printed with a source line: {caught[0].category.__name__}: {caught[0].message}"
    assert tensor.dtype.is_floating_point and tensor.dim() == 3 and tensor.shape[0] == 3, tuple(tensor.shape)
    assert tensor.shape[1] * tensor.shape[2] <= PIXEL_LIMIT, tuple(tensor.shape)
    assert bool(tensor.isfinite().all()) and float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    return "ok"


def check_read_png16(path: Path) -> str | None:
    """read_png16 on a 16-bit colour PNG header within the limit (its documented contract): 'ok', 'refused', or
    None when the header is not that."""
    header = png16.read_header(path)
    if header is None or header.bit_depth != 16 or header.color_type not in png16.CHANNELS:
        return None
    if header.width * header.height > PIXEL_LIMIT:
        return None
    try:
        pixels = png16.read_png16(path)
    except UserError as err:
        assert "\n" not in str(err) and str(path) in str(err), f"refusal not one line naming the file: {err!r}"
        return "refused"
    assert pixels.dtype == np.uint16 and pixels.shape == (header.height, header.width, png16.CHANNELS[
        header.color_type]), pixels.shape
    return "ok"


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def run(cases: int, *, seed: int = SEED, only: int | None = None, keep: Path | None = None) -> dict:
    seeds = make_seeds()
    outcomes: dict[str, dict[str, int]] = {}
    failures, slowest, slowest_wall = [], (0.0, -1), 0.0
    signal.signal(signal.SIGPROF, _alarm)
    noisy: list[int] = []  # cases during which a C library wrote to the process's stderr itself
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "stderr.txt", "w+b") as captured:
        check_read_image(_write(Path(tmp), "warm.png", seeds[0][2]))  # first-call costs before the baseline
        baseline = peak_rss_bytes()
        peak_case = None
        started = time.perf_counter()
        for case in ([only] if only is not None else range(cases)):
            name, ext, data, what = make_case(case, seeds, seed)
            path = _write(Path(tmp), f"case{ext}", data)
            if keep is not None:
                keep.write_bytes(data)
            before = peak_rss_bytes()
            stderr_size = captured.seek(0, 2)
            saved_stderr = os.dup(2)
            os.dup2(captured.fileno(), 2)  # libtiff prints some diagnostics straight to fd 2: count them
            t0, wall0 = time.process_time(), time.perf_counter()
            signal.setitimer(signal.ITIMER_PROF, HARD_TIMEOUT)
            try:
                result = check_read_image(path)
                direct = check_read_png16(path)
                if direct is not None:
                    result += f"+png16 {direct}"
            except BaseException as err:  # noqa: BLE001 - every escape is what this script looks for
                if isinstance(err, KeyboardInterrupt):
                    raise
                result = "FAILURE"
                frames = traceback.extract_tb(err.__traceback__)
                where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
                failures.append({"case": case, "seed": name, "mutation": what, "error": type(err).__name__,
                                 "message": str(err).splitlines()[0][:200] if str(err) else "", "where": where})
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
                seconds, wall = time.process_time() - t0, time.perf_counter() - wall0
                os.dup2(saved_stderr, 2)
                os.close(saved_stderr)
            if captured.seek(0, 2) > stderr_size:
                noisy.append(case)
            if seconds > slowest[0]:
                slowest = (seconds, case)
            slowest_wall = max(slowest_wall, wall)
            if seconds > MAX_SECONDS and result != "FAILURE":
                failures.append({"case": case, "seed": name, "mutation": what, "error": "slow",
                                 "message": f"{seconds:.1f} CPU s (> {MAX_SECONDS:.0f} s)", "where": ""})
            after = peak_rss_bytes()
            if after > before and after - baseline > MEMORY_BOUND and peak_case is None:
                peak_case = case
                failures.append({"case": case, "seed": name, "mutation": what, "error": "memory",
                                 "message": f"peak RSS {(after - baseline) / 2**20:.0f} MiB over the start "
                                            f"(> {MEMORY_BOUND / 2**20:.0f} MiB)", "where": ""})
            family = outcomes.setdefault(name, {})
            family[result] = family.get(result, 0) + 1
        total_seconds = time.perf_counter() - started
        captured.seek(0)
        stderr_sample = sorted(set(captured.read().decode("utf-8", "replace").splitlines()))[:10]
    return {"cases": 1 if only is not None else cases, "seed": seed, "pixel_limit": PIXEL_LIMIT,
            "max_seconds": round(slowest[0], 3), "slowest_case": slowest[1], "max_wall_seconds": round(slowest_wall, 3),
            "total_seconds": round(total_seconds, 1),
            "peak_rss_growth_mib": round((peak_rss_bytes() - baseline) / 2**20, 1),
            "memory_bound_mib": round(MEMORY_BOUND / 2**20), "failures": failures, "outcomes": outcomes,
            "seeds": len(seeds), "stderr_noise_cases": noisy, "stderr_noise_sample": stderr_sample}


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---- png16 against the libraries (--compare) -----------------------------------------------------------------------

def smooth16(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A photo-like 16-bit image: gradients plus noise of a few 8-bit levels."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 60.0 + y * 20.0 + c * 5000.0 for c in range(channels)], axis=-1)
    return np.clip(base + np.random.default_rng(seed).normal(0.0, 300.0, base.shape), 0, 65535).astype(np.uint16)


def best_of(fn, repeats: int = 3) -> float:
    """The least CPU time of `repeats` calls (CPU time: the machine may be shared with a training job)."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def compare_libraries(side: int = 1024) -> list[str]:
    """Markdown lines: can Pillow, imageio and pypng read and write 16-bit RGB PNG losslessly, and how fast?"""
    import PIL

    img = smooth16(side, side)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours.png"
        write_s = best_of(lambda: png16.write_png16(ours, img))
        read_s = best_of(lambda: png16.read_png16(ours))
        assert np.array_equal(png16.read_png16(ours), img)
        lines.append(f"| mgsrgan.io.png16 | yes | {read_s:.3f} | yes | {write_s:.3f} | {ours.stat().st_size:,} | |")
        with Image.open(ours) as pil:
            pil.load()
            got = np.asarray(pil)
        lossless = got.dtype == np.uint16 and np.array_equal(got, img)
        try:
            Image.fromarray(img)
            writes = "yes"
        except (TypeError, ValueError) as err:
            writes = f"no ({err})"
        reads = "yes" if lossless else f"no: mode {pil.mode}, {got.dtype} (the high byte)"
        lines.append(f"| Pillow {PIL.__version__} | {reads} | | {writes} | | | no 16-bit RGB mode |")
        try:
            import imageio
            import imageio.v3 as iio

            got = iio.imread(ours)
            lines.append(f"| imageio {imageio.__version__} | {'yes' if got.dtype == np.uint16 else f'no: {got.dtype}'}"
                         f" | | | | | reads PNG through Pillow |")
        except ImportError:
            lines.append("| imageio | not installed | | | | | |")
        try:
            import png
        except ImportError:
            lines.append("| pypng | not installed (`pip install pypng`, or PYTHONPATH to it) | | | | | |")
        else:
            theirs = Path(tmp) / "pypng.png"

            def pypng_read():
                width, height, rows, _ = png.Reader(filename=str(ours)).asDirect()
                return np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, 3)

            def pypng_write():
                with open(theirs, "wb") as fh:
                    png.Writer(side, side, greyscale=False, bitdepth=16).write(fh, img.reshape(side, side * 3))

            pread, pwrite = best_of(pypng_read), best_of(pypng_write)
            same = np.array_equal(pypng_read(), img) and np.array_equal(png16.read_png16(theirs), img)
            version = getattr(png, "__version__", "?")
            lines.append(f"| pypng {version} | {'yes' if same else 'NO'} | {pread:.3f} | yes | {pwrite:.3f} | "
                         f"{theirs.stat().st_size:,} | pure Python; last release 2022-07 |")
    header = [f"`{side}x{side}` 16-bit RGB, gradients + noise (photo-like), CPU seconds, best of 3, 1 thread:", "",
              "| codec | reads 16-bit RGB losslessly | read CPU s | writes it | write CPU s | file bytes | note |",
              "| --- | --- | ---: | --- | ---: | ---: | --- |"]
    return header + lines


# ---- report --------------------------------------------------------------------------------------------------------

def report(summary: dict, comparison: list[str] | None) -> str:
    lines = ["# Fuzzed image input", "",
             f"Generated by `python tests/test_fuzz_images.py{' --compare' if comparison else ''}` "
             f"({platform.processor() or platform.machine()}, Python {platform.python_version()}, "
             f"Pillow {Image.__version__}, numpy {np.__version__}). See the script's docstring for the seeds, "
             "mutations and what passes.", "",
             f"- cases: **{summary['cases']:,}** (seed {summary['seed']}; {summary['seeds']} seed files), every one "
             f"through `read_image(max_pixels={summary['pixel_limit']:,})` and, for 16-bit RGB/RGBA PNG headers "
             "within the limit, `read_png16`",
             f"- failures (a traceback other than mgsrgan's one-line UserError subclasses, a case over "
             f"{MAX_SECONDS:.0f} s, memory over the bound): **{len(summary['failures'])}**",
             f"- slowest case: {summary['max_seconds']:.2f} CPU s (case {summary['slowest_case']}; the most wall "
             f"time any case took: {summary['max_wall_seconds']:.2f} s, on a CPU shared with a training job); all "
             f"cases: {summary['total_seconds']:.0f} s",
             f"- peak RSS growth over the run: {summary['peak_rss_growth_mib']:.0f} MiB (bound "
             f"{summary['memory_bound_mib']} MiB = {BYTES_PER_PIXEL} B x the pixel limit + "
             f"{SLACK_BYTES >> 20} MiB)", ""]
    if summary["failures"]:
        lines += ["| case | seed | mutation | error | message | where |", "| ---: | --- | --- | --- | --- | --- |"]
        lines += [f"| {f['case']} | {f['seed']} | {f['mutation']} | {f['error']} | {f['message']} | {f['where']} |"
                  for f in summary["failures"][:50]]
        lines.append("")
    noisy = summary["stderr_noise_cases"]
    lines += [f"Known, not a failure: in {len(noisy)} case(s) ({', '.join(map(str, noisy[:10]))}) libtiff, inside "
              "Pillow, wrote its own diagnostic straight to the process's stderr (" +
              "; ".join(f"`{line}`" for line in summary["stderr_noise_sample"]) + "): a plain line, no traceback; "
              "the file then read or got its one-line error as usual.", ""] if noisy else []
    lines += ["## Outcomes by seed", "", "| seed | outcomes |", "| --- | --- |"]
    for name, counts in sorted(summary["outcomes"].items()):
        lines.append(f"| {name} | {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))} |")
    lines += ["", "## Crashes this fuzzer found, now fixed", "", FIXED, ""]
    if comparison:
        lines += ["## png16 (our 16-bit RGB PNG codec) against the libraries", ""] + comparison + ["", DECISION, ""]
    return "\n".join(lines)


FIXED = """\
Run against the code before the fixes (`mgsrgan/io/images.py`, `mgsrgan/io/png16.py` of the parent commit), the
first 2,000 cases gave 4 failures; no case raised anything but a UserError, then or now:
- Hangs: 16-bit RGB PNGs one pixel thin (seed `png16-thin-wide`: 262,144 x 1, a 1 KB file of 0.26 Mpx, within any
  pixel limit) took 7.5 s in `read_png16` (12-14 s wall in cases 37 and 971, on the shared CPU); 1,048,576 x 1
  would take about 30 s (linear in width + height). Its unfiltering
  makes one numpy step per anti-diagonal, width + height of them, whatever the pixel count. `read_png16` now refuses
  width + height over `png16.MAX_SIDE_SUM` (65,536; 1 x 65,536 decodes in 2.1 s) with a one-line error.
- Warnings with a source line: Pillow's `UserWarning: Tag data larger than file. Skipping tag ...` (and `Corrupt
  EXIF data`) escaped `read_image` for damaged TIFF and EXIF metadata (cases 1760, 1807). `read_image` now silences
  Pillow's UserWarnings while decoding: the pixels are still read, or the file gets its one BadImageError."""

DECISION = """\
Decision: **keep `mgsrgan/io/png16.py`.** Pillow still cannot hold 16-bit RGB (it reads the high byte and cannot
write it), imageio reads PNG through Pillow, and pypng, the one library that does the job, is pure Python with its
last release in July 2022: it reads about 4x slower than ours and writes 22% larger files (no adaptive filtering),
though it writes a little faster (table above). The reason is repeated in png16.py's docstring."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=CASES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--case", type=int, default=None, help="replay this case only")
    parser.add_argument("--keep", type=Path, default=None, help="with --case: copy its file here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULT.relative_to(ROOT)}")
    parser.add_argument("--compare", action="store_true", help="also measure png16 against Pillow, imageio, pypng")
    args = parser.parse_args()
    summary = run(args.cases, seed=args.seed, only=args.case, keep=args.keep)
    comparison = compare_libraries() if args.compare else None
    if args.json:
        print(json.dumps(summary))
    else:
        for failure in summary["failures"]:
            print(f"FAIL case {failure['case']} ({failure['seed']}: {failure['mutation']}): {failure['error']} "
                  f"{failure['message']} {failure['where']}")
        print(f"{summary['cases']} cases, {len(summary['failures'])} failures, "
              f"slowest {summary['max_seconds']:.2f} CPU s "
              f"(case {summary['slowest_case']}), peak RSS +{summary['peak_rss_growth_mib']:.0f} MiB "
              f"(bound {summary['memory_bound_mib']} MiB), {summary['total_seconds']:.0f} s")
        if comparison:
            print("\n".join(comparison))
    if not args.no_write and args.case is None:
        RESULT.write_text(report(summary, comparison) + "\n")
        print(f"wrote {RESULT.relative_to(ROOT)}")
    return 1 if summary["failures"] else 0


def fuzz(cases: int, timeout: int) -> dict:
    """This file as a script, in a process of its own, so its peak memory is its own."""
    result = subprocess.run([sys.executable, __file__, "--cases", str(cases), "--json", "--no-write"], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check(summary: dict, cases: int) -> None:
    assert summary["cases"] == cases
    assert summary["failures"] == [], summary["failures"][:5]
    assert summary["max_seconds"] < 5.0
    assert summary["peak_rss_growth_mib"] <= summary["memory_bound_mib"]
    outcomes = {kind for counts in summary["outcomes"].values() for kind in counts}
    assert {"ok", "refused"} <= outcomes and any("png16" in kind for kind in outcomes)  # every path reached


def test_fuzzed_files_are_read_or_refused_in_one_line():
    check(fuzz(300, timeout=600), 300)


@pytest.mark.slow
def test_ten_thousand_fuzzed_files():
    check(fuzz(10_000, timeout=3600), 10_000)


if __name__ == "__main__":
    sys.exit(main())
