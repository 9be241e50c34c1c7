"""16-bit-per-channel RGB / RGBA PNG files <-> uint16 arrays, which Pillow reads as 8 bits and cannot write.

Pure numpy + zlib, written from the PNG specification (W3C PNG, 3rd edition; RFC 2083 for the 1st):
  file   = signature, IHDR, ..., IDAT+, ..., IEND; each chunk = length, type, data, CRC-32 of type + data  (sec. 5)
  pixels = big-endian 16-bit samples (sec. 7.1), each row prefixed by a filter type byte, zlib-compressed (sec. 9)
Only bit depth 16 with colour type 2 (RGB) or 6 (RGBA), non-interlaced, is handled: 8-bit and gray PNGs are
Pillow's job. Ancillary chunks (iCCP, eXIf, tRNS, gAMA, ...) are skipped here; `mgsrgan.io.images` takes the colour
profile and EXIF from Pillow's header parse.

Undoing the filters: Sub / Average / Paeth predict each byte from its left neighbour, so a row cannot be done in
one vector operation. Every pixel depends only on its left, upper and upper-left neighbours, so all pixels on one
anti-diagonal (y + x = d) are independent: the decoder stores the image skewed (diagonal-major) and reconstructs
one whole diagonal per numpy step, H + W steps instead of H * W (hence MAX_SIDE_SUM).

Why our own codec: Pillow opens 16-bit RGB/RGBA PNG as 8-bit RGB/RGBA (the high byte) and has no 16-bit RGB mode to
write one (Image.fromarray of (H, W, 3) uint16 raises); imageio reads PNG through Pillow (uint8). pypng is lossless
both ways but pure Python, slower to read, writes larger files (no adaptive filtering), and would be a new
dependency for this one path. This codec agrees with Pillow's high byte and with a byte-by-byte reference encoder
(tests/test_png16.py) and is fuzzed with the rest of the image readers (tests/test_fuzz_images.py).
"""
from __future__ import annotations

import math
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgsrgan.errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # PNG spec 5.2
IHDR_FORMAT = ">IIBBBBB"  # width, height, bit depth, colour type, compression, filter method, interlace (sec. 11.2.2)
IHDR_LENGTH = struct.calcsize(IHDR_FORMAT)  # 13
MAX_CHUNK_LENGTH = 2**31 - 1  # PNG spec 5.3: chunk lengths and image dimensions are at most 2^31 - 1
BIT_DEPTH = 16
CHANNELS = {2: 3, 6: 4}  # colour type -> samples per pixel: 2 truecolour (RGB), 6 truecolour with alpha (sec. 6.1)
SAMPLE_BYTES = 2  # one 16-bit sample
INTERLACE_NONE, INTERLACE_ADAM7 = 0, 1  # PNG spec 8.1
FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH = range(5)  # filter method 0's types (sec. 9.2)
ZLIB_LEVEL = 6  # zlib's default: within a few % of level 9's size on photographs at a fraction of the time
IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk written: any size is valid, 1 MiB bounds the buffer
ENCODE_BLOCK_BYTES = 4 << 20  # raw image bytes filtered per step when writing (five int16 candidates: ~40 MiB)
BAND_BYTES = 64 << 20  # size of the skewed band the decoder reconstructs at once; larger bands = fewer steps
# Decoding makes one numpy step per anti-diagonal of each band, about width + height of them, whatever the pixel
# count: a tiny file of one very long row would take seconds within any pixel limit (tests/test_fuzz_images.py).
# Refused above this sum; 16-bit photos are far inside it (8000 x 6000: 14,000).
MAX_SIDE_SUM = 1 << 16
ICC_PROFILE_NAME = b"ICC profile"  # iCCP keyword (1-79 Latin-1 bytes; the name itself carries no meaning)


class Png16Error(UserError):
    """A 16-bit RGB/RGBA PNG that cannot be decoded: corrupt, truncated, interlaced, or not that kind of PNG."""


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields (PNG spec 11.2.2)."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int


def read_header(path: Path) -> PngHeader | None:
    """The IHDR of `path` (the first 33 bytes only), or None when the file does not start like a PNG.

    The IHDR's CRC is not checked here (read_png16 checks every chunk). OSError if the file cannot be read.
    """
    with open(path, "rb") as fh:
        head = fh.read(len(PNG_SIGNATURE) + 8 + IHDR_LENGTH)
    if len(head) < len(PNG_SIGNATURE) + 8 + IHDR_LENGTH or not head.startswith(PNG_SIGNATURE):
        return None
    length, kind = struct.unpack(">I4s", head[8:16])
    if kind != b"IHDR" or length != IHDR_LENGTH:
        return None
    width, height, bit_depth, color_type, _, _, interlace = struct.unpack(IHDR_FORMAT, head[16:])
    return PngHeader(width, height, bit_depth, color_type, interlace)


def is_png16_color(path: Path) -> bool:
    """True for a PNG whose IHDR says bit depth 16 with colour type 2 (RGB) or 6 (RGBA), interlaced or not."""
    header = read_header(path)
    return header is not None and header.bit_depth == BIT_DEPTH and header.color_type in CHANNELS


def iter_chunks(path: Path, data: bytes):
    """Yield (type, data) of each chunk up to and including IEND, checking lengths and CRCs (Png16Error)."""
    if not data.startswith(PNG_SIGNATURE):
        raise Png16Error(f"{path}: not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise Png16Error(f"{path}: truncated PNG (the file ends before its IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        if length > MAX_CHUNK_LENGTH or end > len(data):
            raise Png16Error(f"{path}: truncated or corrupt PNG (chunk {kind!r} at byte {pos} runs past the end)")
        body = data[pos + 8:end - 4]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(kind + body) != crc:
            raise Png16Error(f"{path}: corrupt PNG (CRC mismatch in chunk {kind!r} at byte {pos})")
        yield kind, body
        if kind == b"IEND":
            return
        pos = end


def parse_header(path: Path, kind: bytes, body: bytes) -> PngHeader:
    """The first chunk -> PngHeader, refusing anything but non-interlaced 16-bit RGB/RGBA (Png16Error)."""
    if kind != b"IHDR" or len(body) != IHDR_LENGTH:
        raise Png16Error(f"{path}: corrupt PNG (first chunk is {kind!r}, not a 13-byte IHDR)")
    width, height, bit_depth, color_type, compression, filter_method, interlace = struct.unpack(IHDR_FORMAT, body)
    if bit_depth != BIT_DEPTH or color_type not in CHANNELS:
        raise Png16Error(f"{path}: not a 16-bit RGB/RGBA PNG (bit depth {bit_depth}, colour type {color_type})")
    if interlace == INTERLACE_ADAM7:
        raise Png16Error(f"{path}: interlaced (Adam7) 16-bit PNG is not supported; re-save it non-interlaced")
    if not (0 < width <= MAX_CHUNK_LENGTH and 0 < height <= MAX_CHUNK_LENGTH) or compression or filter_method \
            or interlace != INTERLACE_NONE:
        raise Png16Error(f"{path}: corrupt PNG header ({width}x{height}, compression {compression}, "
                         f"filter method {filter_method}, interlace {interlace})")
    return PngHeader(width, height, bit_depth, color_type, interlace)


def read_png16(path: Path) -> np.ndarray:
    """A 16-bit RGB or RGBA PNG -> (H, W, 3 or 4) uint16 array.

    Png16Error (naming the file) for a corrupt, truncated, interlaced or other kind of PNG; OSError if unreadable.
    There is no pixel-count guard here: callers check the header's size first (imageio.read_image does).
    """
    data = Path(path).read_bytes()
    header, compressed = None, []
    for kind, body in iter_chunks(path, data):
        if header is None:
            header = parse_header(path, kind, body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif not kind[0] & 0x20 and kind not in (b"PLTE", b"IEND"):  # bit 5 of byte 0 clear: critical (sec. 5.4)
            raise Png16Error(f"{path}: PNG has a critical chunk {kind!r} this reader does not know")
    if not compressed:
        raise Png16Error(f"{path}: corrupt PNG (no IDAT image data)")
    if header.width + header.height > MAX_SIDE_SUM:
        raise Png16Error(f"{path}: 16-bit colour PNG of {header.width}x{header.height}: width + height over "
                         f"{MAX_SIDE_SUM:,} is not supported (decoding time grows with it); re-save it as 8-bit or "
                         "in pieces")
    channels = CHANNELS[header.color_type]
    pixel_bytes = channels * SAMPLE_BYTES
    row_bytes = 1 + header.width * pixel_bytes  # the filter type byte, then the row's samples
    expected = header.height * row_bytes
    if expected > sys.maxsize:
        raise Png16Error(f"{path}: {header.width}x{header.height} is too large to decode")
    inflater = zlib.decompressobj()
    try:  # max_length: never inflate more than the header's size, whatever the stream holds
        raw = inflater.decompress(b"".join(compressed), expected)
    except zlib.error as err:
        raise Png16Error(f"{path}: corrupt PNG image data ({err})") from None
    if len(raw) != expected:  # extra data past `expected` is ignored, as libpng does (a warning there)
        raise Png16Error(f"{path}: truncated or corrupt PNG image data ({len(raw)} of {expected} bytes)")
    scanlines = np.frombuffer(raw, dtype=np.uint8).reshape(header.height, row_bytes)
    bad_rows = np.flatnonzero(scanlines[:, 0] > FILTER_PAETH)
    if bad_rows.size:
        raise Png16Error(f"{path}: corrupt PNG (row {bad_rows[0]} has filter type {scanlines[bad_rows[0], 0]})")
    pixels = unfilter(scanlines, pixel_bytes).view(">u2")  # big-endian samples (sec. 7.1)
    return pixels.reshape(header.height, header.width, channels).astype(np.uint16)


def paeth_predictor(left: np.ndarray, up: np.ndarray, upleft: np.ndarray) -> np.ndarray:
    """PNG spec 9.4: of left, up, upleft (int16 arrays of bytes), the one nearest left + up - upleft; ties in that
    order."""
    dist_left = np.abs(up - upleft)  # |p - left| with p = left + up - upleft
    dist_up = np.abs(left - upleft)
    dist_upleft = np.abs(left + up - 2 * upleft)
    return np.where((dist_left <= dist_up) & (dist_left <= dist_upleft), left,
                    np.where(dist_up <= dist_upleft, up, upleft))


def band_rows(width: int, pixel_bytes: int) -> int:
    """Rows per decoding band: the most whose skewed array, (rows + width + 1) * (rows + 1) * pixel_bytes bytes,
    fits BAND_BYTES (at least 1)."""
    budget = BAND_BYTES // pixel_bytes  # solve (u + width) * u <= budget for u = rows + 1
    return max(1, (math.isqrt(width * width + 4 * budget) - width) // 2 - 1)


def unfilter(scanlines: np.ndarray, pixel_bytes: int) -> np.ndarray:
    """(H, 1 + W * pixel_bytes) uint8 filtered rows (type byte first, types already checked <= 4) -> (H, W *
    pixel_bytes) uint8 reconstructed bytes, in bands of rows (each band continues from the previous band's last
    row)."""
    height = scanlines.shape[0]
    width = (scanlines.shape[1] - 1) // pixel_bytes
    out = np.empty((height, width * pixel_bytes), dtype=np.uint8)
    prior = np.zeros(width * pixel_bytes, dtype=np.uint8)  # the row above the first is all zeros (sec. 9.2)
    step = band_rows(width, pixel_bytes)
    for top in range(0, height, step):
        rows = slice(top, min(top + step, height))
        out[rows] = unfilter_band(scanlines[rows], prior, pixel_bytes)
        prior = out[rows.stop - 1]
    return out


def unfilter_band(scanlines: np.ndarray, prior: np.ndarray, pixel_bytes: int) -> np.ndarray:
    """Reconstruct h rows, one anti-diagonal per step. `prior`: the reconstructed row above (zeros at the top).

    skew[d + 2, y + 1] holds pixel (y, x = d - y) of the band; row index 0 holds `prior` (pixel (-1, x) lives on
    diagonal x - 1) and cells off the image stay zero, which is exactly the spec's value for missing neighbours.
    """
    height = scanlines.shape[0]
    width = (scanlines.shape[1] - 1) // pixel_bytes
    types = scanlines[:, 0].astype(np.intp)[:, None]  # (h, 1): broadcast over a pixel's bytes
    skew = np.zeros((height + width + 1, height + 1, pixel_bytes), dtype=np.uint8)
    skew[1:width + 1, 0] = prior.reshape(width, pixel_bytes)
    for y in range(height):
        skew[y + 2:y + 2 + width, y + 1] = scanlines[y, 1:].reshape(width, pixel_bytes)
    zero = np.int16(0)
    for diagonal in range(height + width - 1):
        first, last = max(0, diagonal - width + 1), min(height - 1, diagonal)  # rows y on this diagonal
        here, prev, prev2 = skew[diagonal + 2], skew[diagonal + 1], skew[diagonal]
        left = prev[first + 1:last + 2].astype(np.int16)  # (y, x - 1)
        up = prev[first:last + 1].astype(np.int16)  # (y - 1, x)
        upleft = prev2[first:last + 1].astype(np.int16)  # (y - 1, x - 1)
        left_plus_up = left + up
        predicted = np.choose(types[first:last + 1],
                              (zero, left, up, left_plus_up >> 1, paeth_predictor(left, up, upleft)))
        here[first + 1:last + 2] += predicted.astype(np.uint8)  # modulo 256, as the spec's byte arithmetic
    out = np.empty((height, width * pixel_bytes), dtype=np.uint8)
    for y in range(height):
        out[y] = skew[y + 2:y + 2 + width, y + 1].reshape(-1)
    return out


def filter_rows(raw: np.ndarray, prior: np.ndarray, pixel_bytes: int) -> np.ndarray:
    """(h, n) uint8 rows -> (h, 1 + n) filtered rows, each with the filter whose output has the smallest sum of
    |byte as signed| (libpng's heuristic; PNG spec 12.8 recommends adaptive filtering for truecolour)."""
    current = raw.astype(np.int16)
    up = np.concatenate([prior[None], raw[:-1]]).astype(np.int16)
    left = np.zeros_like(current)
    left[:, pixel_bytes:] = current[:, :-pixel_bytes]
    upleft = np.zeros_like(current)
    upleft[:, pixel_bytes:] = up[:, :-pixel_bytes]
    candidates = np.stack([current, current - left, current - up, current - ((left + up) >> 1),
                           current - paeth_predictor(left, up, upleft)]) & 0xFF  # (5, h, n), index = filter type
    cost = np.minimum(candidates, 256 - candidates).sum(axis=2, dtype=np.int64)  # (5, h)
    best = cost.argmin(axis=0)
    out = np.empty((raw.shape[0], raw.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(raw.shape[0])]
    return out


def write_chunk(fh, kind: bytes, body: bytes) -> None:
    fh.write(struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body)))


def write_png16(path: Path, img: np.ndarray, *, icc_profile: bytes | None = None) -> None:
    """(H, W, 3 or 4) uint16 array -> 16-bit RGB or RGBA PNG at `path` (overwritten; callers write atomically).

    `icc_profile` (raw ICC bytes) is stored in an iCCP chunk. ValueError for anything but a non-empty (H, W, 3|4)
    uint16 array.
    """
    img = np.asarray(img)
    if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] not in (3, 4) or 0 in img.shape[:2]:
        raise ValueError(f"write_png16 needs a non-empty (H, W, 3|4) uint16 array, got {img.dtype} {img.shape}")
    height, width, channels = img.shape
    color_type = {3: 2, 4: 6}[channels]
    pixel_bytes = channels * SAMPLE_BYTES
    raw = np.ascontiguousarray(img, dtype=">u2").view(np.uint8).reshape(height, width * pixel_bytes)  # (sec. 7.1)
    block = max(1, ENCODE_BLOCK_BYTES // raw.shape[1])
    with open(path, "wb") as fh:
        fh.write(PNG_SIGNATURE)
        write_chunk(fh, b"IHDR", struct.pack(IHDR_FORMAT, width, height, BIT_DEPTH, color_type, 0, 0,
                                             INTERLACE_NONE))
        if icc_profile:  # keyword, NUL, compression method 0 (zlib), compressed profile (sec. 11.3.3.3)
            write_chunk(fh, b"iCCP", ICC_PROFILE_NAME + b"\0\0" + zlib.compress(icc_profile, ZLIB_LEVEL))
        compressor = zlib.compressobj(ZLIB_LEVEL)
        pending = bytearray()
        prior = np.zeros(raw.shape[1], dtype=np.uint8)
        for top in range(0, height, block):
            rows = raw[top:top + block]
            pending += compressor.compress(filter_rows(rows, prior, pixel_bytes).tobytes())
            prior = rows[-1]
            while len(pending) >= IDAT_BYTES:
                write_chunk(fh, b"IDAT", bytes(pending[:IDAT_BYTES]))
                del pending[:IDAT_BYTES]
        pending += compressor.flush()
        for start in range(0, len(pending), IDAT_BYTES):
            write_chunk(fh, b"IDAT", bytes(pending[start:start + IDAT_BYTES]))
        write_chunk(fh, b"IEND", b"")
