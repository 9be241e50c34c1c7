"""Training patches and validation images: image folders -> (LR, HR) float tensors in [0, 1].

A training sample is a pure function of (seed, global sample index n): the image, the crop and the augmentation
all come from `numpy.random.default_rng([seed, n])`. So the DataLoader's workers need no seeding, every
DistributedDataParallel rank can build the same dataset and read only its own indices, and resuming at step s
just means asking for the indices of step s again (`StepSampler`). There is no epoch: the dataset is a virtual
stream of `length` samples.
"""
from __future__ import annotations

import copy
import re
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from mgsrgan.errors import UserError
from mgsrgan.io.degradation import bicubic_downscale, modcrop
from mgsrgan.io.images import IMAGE_EXTENSIONS, BadImageError, ImageFolderError, list_images, read_rgb8

VIRTUAL_LENGTH = 2**62  # an effectively endless stream; below 2**63 so len() still fits a C ssize_t
NUM_DIHEDRAL = 8  # 4 rotations x optional mirror: the x8 flip/rotate augmentation of EDSR (Lim et al. 2017)
BOOTSTRAP_STREAM = 0xB007  # second word of the bootstrap resample's rng key: apart from every patch stream
DEGRADE_STREAM = 0xDE6  # third word of a sample's rng key for its photo degradation: apart from its crop draws
VALIDATION_SEED = 0x5EED  # the photo degradation of validation image i draws from default_rng([VALIDATION_SEED, i])


class DataError(UserError):
    """A data folder or image the user can fix: missing, empty, unreadable, or nothing usable; names the path."""


def folder_images(folder: Path | str, what: str = "images") -> list[Path]:
    """`list_images(folder, recursive=True)`, as a DataError naming the folder when it is missing or holds none."""
    try:
        paths = list_images(Path(folder), recursive=True)
    except ImageFolderError as err:
        raise DataError(str(err)) from None
    if not paths:
        raise DataError(f"{folder}: no {what} ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return paths


class PatchPlan(NamedTuple):
    """Where training sample n comes from; a pure function of (seed, n)."""

    image: int  # index into TrainPatches.sources
    top: int  # LR row of the crop's top-left corner; the HR crop starts at row top * scale
    left: int  # LR column of the crop's top-left corner
    dihedral: int  # 0..7 for apply_dihedral; always 0 without augmentation


class ValImage(NamedTuple):
    """One validation image; unpacks as (name, lr, hr). `(hr * 255).round()` gives back HR's uint8 values exactly."""

    name: str  # path relative to the folder, without suffix, e.g. "baby"
    lr: torch.Tensor  # (1, 3, h, w) float32 in [0, 1]
    hr: torch.Tensor  # (1, 3, h*scale, w*scale) float32 in [0, 1], modcropped


def apply_dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """(H, W, C) -> the same array under dihedral transform k in 0..7: rotate 90*(k % 4) degrees, mirror if k >= 4."""
    out = np.rot90(img, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (a fresh, writable copy)."""
    return torch.from_numpy(np.array(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255))


def pair_by_stem(hr_paths: list[Path], lr_paths: list[Path], scale: int) -> tuple[list[tuple[Path, Path]], int]:
    """Match LR files to HR files by stem -> ([(hr, lr)] in HR order, number of files on either side left unmatched).

    An LR stem with a trailing `x{scale}` (DIV2K's `0001x2`, also `0001_x2`, `0001-X2`) matches HR `0001`.
    Two files claiming the same stem on one side is ambiguous -> DataError naming both.
    """
    suffix = re.compile(rf"[_-]?x{scale}$", re.IGNORECASE)
    hr_by_stem: dict[str, Path] = {}
    for path in hr_paths:
        if path.stem in hr_by_stem:
            raise DataError(f"{path}: same stem as {hr_by_stem[path.stem]}; LR/HR pairing by stem is ambiguous")
        hr_by_stem[path.stem] = path
    lr_by_stem: dict[str, Path] = {}
    for path in lr_paths:
        stem = path.stem if path.stem in hr_by_stem else suffix.sub("", path.stem)
        if stem in lr_by_stem:
            raise DataError(f"{path}: pairs with the same HR stem {stem!r} as {lr_by_stem[stem]}; ambiguous")
        lr_by_stem[stem] = path
    pairs = [(hr, lr_by_stem[stem]) for stem, hr in hr_by_stem.items() if stem in lr_by_stem]
    return pairs, len(hr_paths) + len(lr_paths) - 2 * len(pairs)


class TrainPatches(torch.utils.data.Dataset):
    """Aligned random (LR, HR) patches: item n -> ((3, p/s, p/s), (3, p, p)) float32 in [0, 1], p = hr_patch.

    HR-only folders: HR is modcropped and its LR made once per image with `bicubic_downscale` of the WHOLE image
    (the degradation evaluation uses, so no crop-border effects differ). Paired folders (`lr_dirs[i]` with
    `hr_dirs[i]`): files matched by stem, LR size * scale must equal the modcropped HR size. Crops are drawn on the
    LR grid, so the HR crop is exactly the LR crop times `scale`. Images are decoded here in the main process and
    reach DataLoader workers by fork; uint8 arrays in a list are shared copy-on-write (reading one only touches
    its small Python header, never the pixel buffer). With `cache_images=False` only sizes are kept and each item
    decodes its image again (slower, same samples).
    """

    def __init__(self, *, hr_dirs: Sequence[str], lr_dirs: Sequence[str] = (), scale: int, hr_patch: int,
                 augment: bool, seed: int, cache_images: bool = True, length: int = VIRTUAL_LENGTH,
                 exclude: Sequence[Path] = (), degrade: Callable | None = None):
        """degrade: None (LR from the folders: bicubic or paired) or a PhotoDegrader, which makes each sample's LR
        from its augmented HR crop with default_rng([seed, n, DEGRADE_STREAM]) (the same LR for the same sample)."""
        if not hr_dirs:
            raise DataError("no training image folder given (data.train_dirs is empty)")
        if lr_dirs and len(lr_dirs) != len(hr_dirs):
            raise DataError(f"{len(lr_dirs)} LR folders for {len(hr_dirs)} HR folders; need one per HR folder")
        if scale < 1 or hr_patch < scale or hr_patch % scale:
            raise DataError(f"hr_patch {hr_patch} must be a positive multiple of scale {scale}")
        if seed < 0 or not 1 <= length <= VIRTUAL_LENGTH:
            raise DataError(f"seed must be >= 0 (got {seed}) and length in 1..2**62 (got {length})")
        self.scale, self.hr_patch, self.lr_patch = scale, hr_patch, hr_patch // scale
        self.augment, self.seed, self.length, self.cache_images = augment, seed, length, cache_images
        self.degrade = degrade
        self.skipped_small = self.skipped_unreadable = self.skipped_mismatch = self.unmatched = 0
        self.sources: list[tuple[Path, Path | None]] = []  # (HR file, LR file or None = bicubic from HR)
        self._hr: list[np.ndarray] = []  # (H, W, 3) uint8, modcropped; empty unless cache_images
        self._lr: list[np.ndarray] = []  # (H/s, W/s, 3) uint8
        lr_sizes: list[tuple[int, int]] = []
        found = 0
        held_out = {Path(p).resolve() for p in exclude}
        for i, hr_dir in enumerate(hr_dirs):
            hr_paths = folder_images(hr_dir)
            hr_paths = [p for p in hr_paths if p.resolve() not in held_out]  # validation images never train
            if not hr_paths:
                raise DataError(f"{hr_dir}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
            if lr_dirs:
                lr_paths = folder_images(lr_dirs[i])
                pairs, unmatched = pair_by_stem(hr_paths, lr_paths, scale)
                if unmatched:
                    warnings.warn(f"{hr_dir} / {lr_dirs[i]}: {unmatched} file(s) without a partner of the same stem "
                                  "ignored", stacklevel=2)
                self.unmatched += unmatched
            else:
                pairs = [(path, None) for path in hr_paths]
            found += len(pairs)
            for hr_path, lr_path in pairs:
                loaded = self._load_checked(hr_path, lr_path)
                if loaded is None:
                    continue
                hr, lr = loaded
                self.sources.append((hr_path, lr_path))
                lr_sizes.append(lr.shape[:2])
                if cache_images:
                    self._hr.append(hr)
                    self._lr.append(lr)
        # Images smaller than a patch are expected (T91 has one), not a fault: counted in skipped_small, which the
        # training CLI reports in its start line, rather than raised as a Python warning with a source line.
        if not self.sources:
            raise DataError(
                f"no usable training images in {', '.join(map(str, [*hr_dirs, *lr_dirs]))}: {found} found, "
                f"{self.skipped_small} smaller than the {hr_patch}px HR patch, {self.skipped_unreadable} unreadable, "
                f"{self.skipped_mismatch} LR/HR size mismatches, {self.unmatched} unpaired")
        # Images are picked with probability proportional to their number of crop positions, i.e. every possible
        # patch of the training set is equally likely (as if all sub-images were pre-extracted, SRCNN-style).
        # Picking images uniformly would show each pixel of a small 78 px T91 image ~20x more often than a pixel of
        # a 481x321 BSD200 image, overfitting the small ones.
        sizes = np.array(lr_sizes, dtype=np.int64).reshape(-1, 2)
        self._cols = sizes[:, 1] - self.lr_patch + 1  # crop positions per row, LR grid
        self._positions = (sizes[:, 0] - self.lr_patch + 1) * self._cols  # crop positions per image
        self._set_image_weights(np.ones(len(self.sources), dtype=np.int64))

    def _set_image_weights(self, weights: np.ndarray) -> None:
        """Image i counts `weights[i]` times (0 = left out): a bootstrap resample is a vector of multiplicities."""
        self.image_weights = weights
        self._cum_positions = np.cumsum(self._positions * weights)  # running end per image
        self.total_positions = int(self._cum_positions[-1])

    def bootstrap(self, seed: int) -> TrainPatches:
        """A copy drawing from a bootstrap resample of the images (n draws with replacement, Efron 1979), a pure
        function of `seed`; shares the decoded images. About 1 - 1/e = 63 % of the images are in each resample."""
        n = len(self.sources)
        counts = np.random.default_rng([seed, BOOTSTRAP_STREAM]).multinomial(n, np.full(n, 1.0 / n))
        out = copy.copy(self)
        out._set_image_weights(counts.astype(np.int64))
        return out

    def _decode(self, hr_path: Path, lr_path: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
        """-> (modcropped HR, LR) uint8; LR is None when the HR is smaller than a patch (so not worth making)."""
        hr = modcrop(read_rgb8(hr_path)[0], self.scale)
        if min(hr.shape[:2]) < self.hr_patch:
            return hr, None
        lr = np.array(bicubic_downscale(hr, self.scale)) if lr_path is None else read_rgb8(lr_path)[0]
        return hr, lr

    def _load_checked(self, hr_path: Path, lr_path: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Decode one source, or count it as skipped (warning once for broken files/mismatches) and return None."""
        try:
            hr, lr = self._decode(hr_path, lr_path)
        except BadImageError as err:
            self.skipped_unreadable += 1
            warnings.warn(f"{hr_path if lr_path is None else f'{hr_path} / {lr_path}'}: unreadable image skipped "
                          f"({type(err).__name__}: {err})", stacklevel=3)
            return None
        if lr is None:
            self.skipped_small += 1
            return None
        if lr.shape[0] * self.scale != hr.shape[0] or lr.shape[1] * self.scale != hr.shape[1]:
            self.skipped_mismatch += 1
            warnings.warn(f"{lr_path} ({lr.shape[1]}x{lr.shape[0]}) x{self.scale} does not match {hr_path} "
                          f"({hr.shape[1]}x{hr.shape[0]} after modcrop); pair skipped", stacklevel=3)
            return None
        return hr, lr

    def __len__(self) -> int:
        return self.length

    def plan(self, n: int) -> PatchPlan:
        """Image, LR crop corner and dihedral transform of sample n, from default_rng([seed, n]) alone."""
        if not 0 <= n < self.length:
            raise IndexError(f"sample {n} outside 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, n])
        # One draw over all crop positions of the set, then split into (image, row, column): see __init__ for why.
        position = int(rng.integers(self.total_positions))
        image = int(np.searchsorted(self._cum_positions, position, side="right"))  # weight-0 images never hit
        # A bootstrap weight w > 1 repeats the image's positions w times: fold back onto one copy.
        offset = (position - (int(self._cum_positions[image - 1]) if image else 0)) % int(self._positions[image])
        top, left = divmod(offset, int(self._cols[image]))
        # Drawn after the crop, so augment=False gives the same image and crop for the same (seed, n).
        dihedral = int(rng.integers(NUM_DIHEDRAL)) if self.augment else 0
        return PatchPlan(image, top, left, dihedral)

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (lr (3, p/s, p/s), hr (3, p, p)), float32 in [0, 1]."""
        image, top, left, dihedral = self.plan(int(n))
        if self.cache_images:
            hr, lr = self._hr[image], self._lr[image]
        else:
            hr, lr = self._decode(*self.sources[image])
            if lr is None or lr.shape[0] * self.scale != hr.shape[0]:
                raise DataError(f"{self.sources[image][0]}: changed on disk since the dataset was built")
        lp, s = self.lr_patch, self.scale
        hr_crop = apply_dihedral(hr[top * s: (top + lp) * s, left * s: (left + lp) * s], dihedral)
        if self.degrade is not None:
            rng = np.random.default_rng([self.seed, int(n), DEGRADE_STREAM])
            lr_crop = self.degrade(np.ascontiguousarray(hr_crop), rng)
        else:
            lr_crop = apply_dihedral(lr[top: top + lp, left: left + lp], dihedral)
        return _to_tensor(lr_crop), _to_tensor(hr_crop)


def sample_indices(step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> range:
    """Global sample numbers of `rank`'s share of global batch `step`: batch_size // world_size consecutive ones.

    Global batch `step` is samples step*batch_size .. (step+1)*batch_size - 1, whatever the number of ranks, so a
    run gives the same global batches on 1 GPU or on 8.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if batch_size < 1 or batch_size % world_size:
        raise DataError(f"data.batch_size {batch_size} is not divisible by the {world_size} processes")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    per_rank = batch_size // world_size
    start = step * batch_size + rank * per_rank
    return range(start, start + per_rank)


class MemberStreams(torch.utils.data.Dataset):
    """K patch streams read in lockstep: item n -> (lr (K, 3, p/s, p/s), hr (K, 3, p, p)), stream k's sample n.

    Lets members trained together on one loader still see their own patches (own seed, own bootstrap).
    """

    def __init__(self, streams: Sequence[TrainPatches]):
        self.streams = list(streams)

    def __len__(self) -> int:
        return min(len(s) for s in self.streams)

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [stream[n] for stream in self.streams]
        return torch.stack([lr for lr, _ in pairs]), torch.stack([hr for _, hr in pairs])


def holdout_paths(train_dirs: Sequence[str], count: int) -> list[Path]:
    """The last `count` images (sorted by relative path) of the last training folder: a fixed validation split
    that TrainPatches(exclude=...) keeps out of training. count 0 -> []."""
    if count <= 0:
        return []
    paths = folder_images(train_dirs[-1])
    if count >= len(paths):
        raise DataError(f"data.val_holdout={count} would hold out all {len(paths)} images of {train_dirs[-1]}")
    return paths[-count:]


class StepSampler(torch.utils.data.Sampler[int]):
    """Yields `rank`'s sample indices for steps start_step .. stop_step - 1 in order; resume = start at step s."""

    def __init__(self, *, batch_size: int, start_step: int, stop_step: int, rank: int = 0, world_size: int = 1):
        sample_indices(start_step, batch_size, rank, world_size)  # validates the arguments
        if stop_step < start_step:
            raise ValueError(f"stop_step {stop_step} < start_step {start_step}")
        self.batch_size, self.start_step, self.stop_step = batch_size, start_step, stop_step
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.stop_step):
            yield from sample_indices(step, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return (self.stop_step - self.start_step) * (self.batch_size // self.world_size)


def make_loader(dataset: torch.utils.data.Dataset, *, batch_size: int, start_step: int, stop_step: int,
                num_workers: int, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """DataLoader whose k-th batch is this rank's share of global batch start_step + k, for steps up to stop_step.

    `batch_size` is the global batch. No worker seeding is needed (samples are index-derived) and workers are not
    persistent (a loader covers one span of steps). The loader's own generator keeps it off the global torch RNG,
    which a resume restores: each new iterator draws a base seed, and a resumed run makes one more than a straight
    one. drop_last=True: the sampler only ever yields whole steps, so nothing is dropped; it guards the "every batch
    is a full step" promise.
    """
    sampler = StepSampler(batch_size=batch_size, start_step=start_step, stop_step=stop_step, rank=rank,
                          world_size=world_size)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler,
                                       num_workers=num_workers, pin_memory=pin_memory, drop_last=True,
                                       persistent_workers=False, worker_init_fn=leave_stop_signals_to_parent,
                                       generator=torch.Generator().manual_seed(0))


def leave_stop_signals_to_parent(_worker_id: int) -> None:
    """Loader workers ignore SIGINT and SIGTERM: the training process finishes its step and saves first, and a worker
    killed by the terminal's Ctrl-C would fail the batch it waits for. Workers still exit with their parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def load_validation(folder: str, scale: int, max_images: int = 0,
                    paths: Sequence[Path] | None = None, degrade: Callable | None = None) -> list[ValImage]:
    """Every image in `folder` (sorted; the first `max_images` if > 0) as ValImage(name, lr, hr); `paths`: these
    files under `folder` instead (a held-out split).

    HR is modcropped to a multiple of `scale`, LR is its `bicubic_downscale` (the protocol's degradation) or, with
    `degrade` (a PhotoDegrader), that random degradation drawn from a fixed seed per image index; gray
    images become 3 equal channels. Unreadable files and images smaller than `scale` are skipped with a warning.
    """
    root = Path(folder)
    paths = folder_images(root, "validation images") if paths is None else [Path(p) for p in paths]
    if not paths:
        raise DataError(f"{folder}: no validation images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    if max_images > 0:
        paths = paths[:max_images]
    images = []
    for index, path in enumerate(paths):
        try:
            hr = modcrop(read_rgb8(path)[0], scale)
        except BadImageError as err:
            warnings.warn(f"{path}: unreadable validation image skipped ({type(err).__name__}: {err})", stacklevel=2)
            continue
        if min(hr.shape[:2]) < scale:
            warnings.warn(f"{path}: smaller than {scale} px, validation image skipped", stacklevel=2)
            continue
        lr = (bicubic_downscale(hr, scale) if degrade is None
              else degrade(hr, np.random.default_rng([VALIDATION_SEED, index])))
        name = path.relative_to(root).with_suffix("").as_posix()
        images.append(ValImage(name, _to_tensor(lr)[None], _to_tensor(hr)[None]))
    if not images:
        raise DataError(f"{folder}: none of the {len(paths)} validation images could be used")
    return images
