"""16-bit RGB/RGBA PNG codec: round trips, Pillow agrees, every filter type, bad files name themselves."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mgsrgan.io import png16
from mgsrgan.io.png16 import Png16Error, is_png16_color, read_png16, write_png16

COLOR_TYPE = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)


def random_image(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (h, w, channels), dtype=np.uint16)


def smooth_image(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: the writer's adaptive choice then uses several filter types."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 900.0 + y * 300.0 + c * 5000.0 for c in range(channels)], axis=-1)
    noise = np.random.default_rng(seed).normal(0.0, 300.0, base.shape)
    return np.clip(base + noise, 0, 65535).astype(np.uint16)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))


def paeth(a: int, b: int, c: int) -> int:
    """PNG spec 9.4, written out per byte as the spec states it."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def encode_reference(img: np.ndarray, row_filters: list[int], interlace: int = 0) -> bytes:
    """A PNG of `img` with the given filter type per row, filtered byte by byte in plain Python (independent of
    the module's vectorised code)."""
    h, w, channels = img.shape
    bpp = 2 * channels
    rows = [list(img[y].astype(">u2").tobytes()) for y in range(h)]
    stream = bytearray()
    for y, kind in enumerate(row_filters):
        prior = rows[y - 1] if y else [0] * (w * bpp)
        stream.append(kind)
        for i, byte in enumerate(rows[y]):
            a = rows[y][i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            predicted = (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]
            stream.append((byte - predicted) % 256)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, COLOR_TYPE[channels], 0, 0, interlace)
    compressed = zlib.compress(bytes(stream))
    half = len(compressed) // 2  # two IDATs: the reader must concatenate them
    return (png16.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", compressed[:half])
            + chunk(b"IDAT", compressed[half:]) + chunk(b"IEND", b""))


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7, 3), (6, 4, 4), (9, 1, 4), (1, 11, 3), (23, 17, 4)])
def test_round_trip_and_pillow_reads_the_high_byte(tmp_path, shape):
    img = random_image(*shape, seed=sum(shape))
    write_png16(tmp_path / "a.png", img)
    assert is_png16_color(tmp_path / "a.png")
    back = read_png16(tmp_path / "a.png")
    assert back.dtype == np.uint16 and np.array_equal(back, img)
    with Image.open(tmp_path / "a.png") as pil:  # Pillow downconverts 16-bit RGB(A) PNG to 8 bits: the high byte
        assert pil.mode == ("RGB" if shape[2] == 3 else "RGBA")
        assert np.array_equal(np.asarray(pil).reshape(shape), (img >> 8).astype(np.uint8))


def test_many_idat_chunks_and_icc_profile(tmp_path, monkeypatch):
    monkeypatch.setattr(png16, "IDAT_BYTES", 100)
    monkeypatch.setattr(png16, "ENCODE_BLOCK_BYTES", 300)  # several filtering blocks, each continuing the last
    img = smooth_image(20, 15, 3)
    profile = b"not a real ICC profile, carried as bytes" * 3
    write_png16(tmp_path / "a.png", img, icc_profile=profile)
    data = (tmp_path / "a.png").read_bytes()
    kinds = [kind for kind, _ in png16.iter_chunks(tmp_path / "a.png", data)]
    assert kinds[:2] == [b"IHDR", b"iCCP"] and kinds.count(b"IDAT") > 3 and kinds[-1] == b"IEND"
    assert np.array_equal(read_png16(tmp_path / "a.png"), img)
    with Image.open(tmp_path / "a.png") as pil:
        assert pil.info["icc_profile"] == profile
        assert np.array_equal(np.asarray(pil), (img >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("row_filters", [[0] * 6, [1] * 6, [2] * 6, [3] * 6, [4] * 6, [4, 3, 2, 1, 0, 4]])
def test_every_filter_type_decodes(tmp_path, channels, row_filters):
    img = smooth_image(6, 5, channels, seed=channels)
    img[2, 3] = 65535  # a jump: wrap-around in the byte arithmetic
    (tmp_path / "f.png").write_bytes(encode_reference(img, row_filters))
    assert np.array_equal(read_png16(tmp_path / "f.png"), img)
    with Image.open(tmp_path / "f.png") as pil:  # an independent decoder agrees the test encoder is right
        assert np.array_equal(np.asarray(pil), (img >> 8).astype(np.uint8))


def test_bands_continue_from_the_row_above(tmp_path, monkeypatch):
    monkeypatch.setattr(png16, "BAND_BYTES", 1)  # one row per band
    img = smooth_image(7, 4, 3)
    (tmp_path / "f.png").write_bytes(encode_reference(img, [4, 2, 3, 1, 4, 0, 3]))
    assert np.array_equal(read_png16(tmp_path / "f.png"), img)
    monkeypatch.setattr(png16, "BAND_BYTES", 200)  # 3-row bands: (3 + 4 + 1) * 4 * 6 = 192 bytes
    assert png16.band_rows(4, 6) == 3
    assert np.array_equal(read_png16(tmp_path / "f.png"), img)


def test_is_png16_color_reads_only_the_header(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb8.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "gray16.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name in ("rgb8.png", "gray16.png", "a.jpg", "empty.png", "text.png"):
        assert not is_png16_color(tmp_path / name), name
    (tmp_path / "laced.png").write_bytes(encode_reference(random_image(2, 2, 4), [0, 0], interlace=1))
    assert is_png16_color(tmp_path / "laced.png")  # so that reading it gives the clear error below


def good_file(tmp_path) -> bytes:
    write_png16(tmp_path / "good.png", smooth_image(16, 16, 3))
    return (tmp_path / "good.png").read_bytes()


def test_corrupt_files_raise_naming_the_file(tmp_path):
    data = good_file(tmp_path)
    idat = data.index(b"IDAT")
    flipped = bytearray(data)
    flipped[idat + 10] ^= 0xFF
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    (tmp_path / "cut.png").write_bytes(data[:len(data) * 2 // 3])
    (tmp_path / "noend.png").write_bytes(data[:-12])  # IEND chunk missing
    (tmp_path / "gray.png").write_bytes(b"")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "gray.png")
    cases = {"crc.png": "CRC mismatch", "cut.png": "truncated", "noend.png": "truncated",
             "gray.png": "not a 16-bit RGB/RGBA PNG"}
    for name, reason in cases.items():
        with pytest.raises(Png16Error, match=reason) as info:
            read_png16(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_valid_chunks_with_bad_contents(tmp_path):
    img = random_image(3, 4, 3)
    ihdr = struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0)
    row = img.astype(">u2").reshape(3, -1).tobytes()
    rows = [bytes([0]) + row[i * 24:(i + 1) * 24] for i in range(3)]

    def png(stream: bytes, extra: bytes = b"") -> bytes:
        return (png16.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", stream)
                + chunk(b"IEND", b""))
    cases = {
        "short.png": (png(zlib.compress(b"".join(rows[:2]))), "2 of 3|50 of 75"),
        "zlib.png": (png(b"\x78\x9c garbage that is not deflate"), "corrupt PNG image data"),
        "filter.png": (png(zlib.compress(rows[0] + bytes([7]) + rows[1][1:] + rows[2])), "row 1 has filter type 7"),
        "critical.png": (png(zlib.compress(b"".join(rows)), chunk(b"ABCD", b"x")), "critical chunk"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(Png16Error, match=reason) as info:
            read_png16(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)
    (tmp_path / "ok.png").write_bytes(png(zlib.compress(b"".join(rows)), chunk(b"tEXt", b"Comment\0hi")))
    assert np.array_equal(read_png16(tmp_path / "ok.png"), img)  # ancillary chunks are skipped


def test_interlaced_is_refused_clearly(tmp_path):
    (tmp_path / "laced.png").write_bytes(encode_reference(random_image(2, 2, 3), [0, 0], interlace=1))
    with pytest.raises(Png16Error, match="interlaced .* not supported") as info:
        read_png16(tmp_path / "laced.png")
    assert str(tmp_path / "laced.png") in str(info.value)


def test_writer_takes_strided_views(tmp_path):
    img = random_image(4, 6, 3)
    view = img.transpose(1, 0, 2)[::-1]  # (6, 4, 3), neither C- nor F-contiguous
    write_png16(tmp_path / "v.png", view)
    assert np.array_equal(read_png16(tmp_path / "v.png"), view)


def test_writer_refuses_other_arrays(tmp_path):
    for bad in (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16), np.zeros((4, 4, 2), np.uint16),
                np.zeros((0, 4, 3), np.uint16)):
        with pytest.raises(ValueError, match="uint16"):
            write_png16(tmp_path / "x.png", bad)


@pytest.mark.parametrize("size", [(262_144, 1), (1, 262_144)])
def test_one_pixel_thin_images_are_refused_not_decoded_for_seconds(tmp_path, size):
    """The decoder's time grows with width + height (one numpy step per anti-diagonal): 262,144 x 1 took 7.5 s from
    a 1 KB file within any pixel limit (tests/test_fuzz_images.py). Past MAX_SIDE_SUM it is a one-line refusal."""
    import time

    from mgsrgan.io.images import BadImageError, read_image

    width, height = size
    rows = (bytes([png16.FILTER_PAETH]) + bytes(width * 6)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    (tmp_path / "thin.png").write_bytes(png16.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                                        + chunk(b"IEND", b""))
    start = time.perf_counter()
    with pytest.raises(Png16Error, match=f"{width}x{height}: width \\+ height over 65,536"):
        read_png16(tmp_path / "thin.png")
    with pytest.raises(BadImageError, match="thin.png: 16-bit colour PNG"):
        read_image(tmp_path / "thin.png")
    assert time.perf_counter() - start < 1.0


def test_thin_images_within_the_side_sum_still_decode(tmp_path):
    img = random_image(1, 4000, 3, seed=5)
    write_png16(tmp_path / "a.png", img)
    assert np.array_equal(read_png16(tmp_path / "a.png"), img)
    write_png16(tmp_path / "b.png", img.reshape(4000, 1, 3))
    assert np.array_equal(read_png16(tmp_path / "b.png"), img.reshape(4000, 1, 3))
