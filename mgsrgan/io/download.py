"""Resumable, checksummed downloads, and the DIV2K / VGG19 fetchers behind `mgsrgan download`.

`fetch` streams to `DEST.part`, resumes a partial `.part` with an HTTP Range request (restarting when the server
ignores Range), verifies size and checksum, then renames to DEST atomically, so DEST exists only when complete.

DIV2K (Agustsson & Timofte, CVPR workshops 2017): 800 training and 100 validation 2K images, with bicubic LR
versions at x2, x3, x4 (MATLAB imresize). No checksums of the official zips are pinned here: we found none
published by the authors and will not invent any. Integrity instead comes from the HTTP Content-Length, the
CRC-32 of every zip member (checked while extracting) and the image count of each archive (800 or 100 PNGs).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from mgsrgan.errors import UserError

CHUNK_BYTES = 1 << 20  # 1 MiB reads: few syscalls, small memory
TIMEOUT_S = 60.0  # socket timeout per read; a stalled server fails instead of hanging forever
HTTP_PARTIAL_CONTENT = 206  # RFC 9110 sec. 15.3.7: the server honoured our Range header
HTTP_RANGE_NOT_SATISFIABLE = 416  # RFC 9110 sec. 15.5.17: e.g. the .part is already as long as the file

DIV2K_BASE_URL = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"  # official host (data.vision.ee.ethz.ch/cvl/DIV2K/)
DIV2K_TRAIN_IMAGES = 800  # images 0001-0800 (Agustsson & Timofte 2017)
DIV2K_VALID_IMAGES = 100  # images 0801-0900 (same)
# subset name -> (zip file on the official host, PNG images it holds)
DIV2K_ARCHIVES = {
    "train_hr": ("DIV2K_train_HR.zip", DIV2K_TRAIN_IMAGES),
    "valid_hr": ("DIV2K_valid_HR.zip", DIV2K_VALID_IMAGES),
    **{f"train_lr_x{s}": (f"DIV2K_train_LR_bicubic_X{s}.zip", DIV2K_TRAIN_IMAGES) for s in (2, 3, 4)},
    **{f"valid_lr_x{s}": (f"DIV2K_valid_LR_bicubic_X{s}.zip", DIV2K_VALID_IMAGES) for s in (2, 3, 4)},
}
DIV2K_DEFAULT_SUBSETS = ("train_hr", "valid_hr")


class DownloadError(UserError):
    """A download that failed or arrived damaged; the message names the URL and where to put the file by hand."""


def _by_hand(url: str, dest: Path) -> str:
    return f"download {url} by hand and place it at {dest}"


def fetch(url: str, dest: Path, *, sha256: str | None = None, sha256_prefix: str | None = None,
          progress: bool = True) -> Path:
    """Download `url` to `dest` (made only once complete and verified); returns `dest`.

    sha256: full hex digest to match; sha256_prefix: leading hex digits to match (torchvision's file names carry
    8). A checksum mismatch deletes the partial file and raises DownloadError; any other failure keeps `dest.part`
    so the next call resumes it.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create {dest.parent}: {err.strerror}") from None
    try:
        digest = _stream(url, part, progress)
    except urllib.error.HTTPError as err:
        if err.code != HTTP_RANGE_NOT_SATISFIABLE or not part.exists():
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; {_by_hand(url, dest)}") from None
        part.unlink()  # the .part does not fit the remote file (as long or longer): start again
        return fetch(url, dest, sha256=sha256, sha256_prefix=sha256_prefix, progress=progress)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # refused, DNS, timeout, cut, disk
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"{url}: {reason}; {_by_hand(url, dest)}") from None
    actual = digest.hexdigest()
    expected = (sha256 or sha256_prefix or "").lower()
    if expected and not actual.startswith(expected):
        part.unlink()
        raise DownloadError(f"{url}: sha256 {actual} does not match the expected {expected}; "
                            f"the file was deleted; {_by_hand(url, dest)}")
    os.replace(part, dest)  # atomic on one filesystem: readers never see a half-written dest
    return dest


def _stream(url: str, part: Path, progress: bool) -> hashlib._Hash:
    """Append the rest of `url` to `part` (or rewrite it); returns the sha256 of the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as response:
        resumed = offset > 0 and response.status == HTTP_PARTIAL_CONTENT
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise DownloadError(f"{url}: server answered Range with {response.headers.get('Content-Range')!r}")
        digest = hashlib.sha256()
        if resumed:
            with part.open("rb") as existing:
                while chunk := existing.read(CHUNK_BYTES):
                    digest.update(chunk)
        else:
            offset = 0  # no Range asked, or the server ignored it and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with part.open("ab" if resumed else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5],
                disable=not progress, leave=False) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes (run again to resume)")
    return digest


def safe_extract(archive: Path, dest: Path, *, expected_images: int | None = None) -> list[Path]:
    """Extract `archive` under `dest` after checking every entry stays inside it; returns the extracted files.

    Rejects absolute names, `..` components and symlink entries before writing anything. expected_images: the
    number of .png entries the archive must hold. CRC-32 errors raise DownloadError naming the archive.
    """
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                target = (root / info.filename).resolve()
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000  # S_IFLNK in the Unix mode bits
                if Path(info.filename).is_absolute() or not target.is_relative_to(root) or is_link:
                    raise DownloadError(f"{archive}: refusing entry {info.filename!r}, which would land outside "
                                        f"{dest} or is a link")
            images = sum(1 for i in members if i.filename.lower().endswith(".png"))
            if expected_images is not None and images != expected_images:
                raise DownloadError(f"{archive}: holds {images} PNG images, expected {expected_images}; "
                                    "delete it and download again")
            return [Path(zf.extract(info, root)) for info in members]
    except zipfile.BadZipFile as err:  # also raised for a CRC mismatch while reading a member
        raise DownloadError(f"{archive}: damaged zip ({err}); delete it and download again") from None
    except OSError as err:  # disk full, no permission
        raise DownloadError(f"{archive}: extracting into {dest} failed: {err}") from None


def download_div2k(dest: Path, subsets: list[str] | tuple[str, ...] = DIV2K_DEFAULT_SUBSETS, *,
                   base_url: str = DIV2K_BASE_URL, keep_zip: bool = False, progress: bool = True) -> list[Path]:
    """Fetch and extract DIV2K subsets (names as DIV2K_ARCHIVES) under `dest`; returns the extracted top folders.

    A subset whose `.<zip>.done` marker exists is skipped (the marker lists its top folders); a zip already
    present is extracted without downloading it again.
    """
    unknown = [s for s in subsets if s not in DIV2K_ARCHIVES]
    if unknown:
        raise UserError(f"unknown DIV2K subset {unknown[0]!r}; choose from {', '.join(DIV2K_ARCHIVES)}")
    folders: list[Path] = []
    for subset in subsets:
        name, images = DIV2K_ARCHIVES[subset]
        archive, marker = dest / name, dest / f".{name}.done"
        if not marker.exists():
            if not archive.exists():
                fetch(base_url + name, archive, progress=progress)
            files = safe_extract(archive, dest, expected_images=images)
            tops = sorted({f.relative_to(dest.resolve()).parts[0] for f in files})
            marker.write_text("".join(f"{top}\n" for top in tops))
            if not keep_zip:
                archive.unlink()
        folders += [dest / top for top in marker.read_text().split()]
    return folders
