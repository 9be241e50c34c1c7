import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan.train.data import (DataError, StepSampler, TrainPatches, apply_dihedral, load_validation,
                          make_loader, sample_indices)
from mgsrgan.io.images import ImageFolderError, list_images, read_rgb8
from mgsrgan.io.degradation import bicubic_downscale, modcrop


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _hr_folder(root: Path, sizes=((40, 36), (29, 51)), name: str = "hr") -> Path:
    for i, (h, w) in enumerate(sizes):
        _save(root / name / f"img{i}.png", _noise(h, w, seed=i))
    return root / name


def _patches(folder: Path, **overrides) -> TrainPatches:
    kwargs = dict(hr_dirs=[str(folder)], scale=2, hr_patch=16, augment=False, seed=3)
    return TrainPatches(**{**kwargs, **overrides})


def _as_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, exact for tensors made from uint8."""
    return (t * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def test_list_images_recursive_sorted_case_insensitive(tmp_path):
    for rel in ("b.PNG", "a.jpg", "sub/c.TiFf", "sub/d.webp", "notes.txt", "e.bmp.bak"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
    assert names == ["a.jpg", "b.PNG", "sub/c.TiFf", "sub/d.webp"]
    with pytest.raises(ImageFolderError, match="nowhere"):
        list_images(tmp_path / "nowhere")


@pytest.mark.parametrize("scale", [2, 4])
def test_shapes_and_ranges(tmp_path, scale):
    ds = _patches(_hr_folder(tmp_path), scale=scale, augment=True)
    # An endless stream in practice: a loader far past any run (config.yaml's 1.2e6 steps at batch 16 draw 2e7
    # samples) still gets full batches, and len() itself fits a C ssize_t (DataLoader and samplers call it).
    far_step = 10**12
    (lr_batch, hr_batch), = make_loader(ds, batch_size=64, start_step=far_step, stop_step=far_step + 1, num_workers=0)
    assert lr_batch.shape == (64, 3, 16 // scale, 16 // scale) and hr_batch.shape == (64, 3, 16, 16)
    last = len(ds) - 1
    with pytest.raises(IndexError):
        ds[last + 1]
    for n in (0, 1, last):
        lr, hr = ds[n]
        assert lr.shape == (3, 16 // scale, 16 // scale) and hr.shape == (3, 16, 16)
        assert lr.dtype == hr.dtype == torch.float32
        for t in (lr, hr):
            assert 0 <= t.min() and t.max() <= 1
            assert torch.allclose(t * 255, (t * 255).round(), atol=1e-4)  # exactly the uint8 levels / 255


@pytest.mark.parametrize("scale", [2, 4])
def test_patch_is_crop_of_whole_image_downscale(tmp_path, scale):
    img = _noise(45, 38, seed=7)  # not a multiple of 4: modcrop matters
    _save(tmp_path / "hr" / "one.png", img)
    ds = _patches(tmp_path / "hr", scale=scale)
    hr_full = modcrop(img, scale)
    lr_full = bicubic_downscale(hr_full, scale)
    lp, corners = 16 // scale, set()
    for n in range(40):
        plan = ds.plan(n)
        lr, hr = ds[n]
        top, left = plan.top, plan.left
        corners.add((top, left))
        assert plan.image == 0 and plan.dihedral == 0
        np.testing.assert_array_equal(_as_uint8(lr), lr_full[top: top + lp, left: left + lp])
        np.testing.assert_array_equal(_as_uint8(hr), hr_full[top * scale: (top + lp) * scale,
                                                              left * scale: (left + lp) * scale])
    assert len(corners) > 20  # crops really move around
    assert max(t for t, _ in corners) > 0 and max(c for _, c in corners) > 0


def test_determinism(tmp_path):
    folder = _hr_folder(tmp_path)
    a, b = _patches(folder, augment=True), _patches(folder, augment=True)
    other_seed = _patches(folder, augment=True, seed=4)
    for n in (0, 5, 123456789):
        assert all(torch.equal(x, y) for x, y in zip(a[n], b[n]))
        assert not torch.equal(a[n][1], a[n + 1][1])
        assert not torch.equal(a[n][1], other_seed[n][1])


def test_uncached_gives_same_samples(tmp_path):
    folder = _hr_folder(tmp_path)
    cached, uncached = _patches(folder, augment=True), _patches(folder, augment=True, cache_images=False)
    for n in range(6):
        assert all(torch.equal(x, y) for x, y in zip(cached[n], uncached[n]))


def test_augmentation_covers_dihedral_group_and_keeps_alignment(tmp_path):
    folder = _hr_folder(tmp_path)
    plain, augmented = _patches(folder), _patches(folder, augment=True)
    seen = set()
    for n in range(120):
        base_lr, base_hr = (_as_uint8(t) for t in plain[n])
        aug_lr, aug_hr = (_as_uint8(t) for t in augmented[n])
        # Noise patches are distinct under all 8 transforms, so exactly one k maps the plain HR patch onto the
        # augmented one, and the same k must map the LR patch too (LR and HR stay aligned).
        ks = [k for k in range(8) if np.array_equal(apply_dihedral(base_hr, k), aug_hr)]
        assert ks == [augmented.plan(n).dihedral]
        np.testing.assert_array_equal(apply_dihedral(base_lr, ks[0]), aug_lr)
        seen.add(ks[0])
    assert seen == set(range(8))


def test_small_images_skipped_and_counted(tmp_path):
    folder = _hr_folder(tmp_path, sizes=((10, 40), (40, 15), (17, 17), (40, 40)))  # 17 -> 16 after modcrop: kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # counted, not warned: the CLI says it in one plain line
        ds = _patches(folder)
    assert ds.skipped_small == 2
    assert [p.name for p, _ in ds.sources] == ["img2.png", "img3.png"]
    # Images are picked in proportion to their crop positions: 16x16 -> 1 position (LR 8x8, patch 8), 40x40 -> 13^2.
    assert ds.total_positions == 1 + 13 * 13
    picks = np.bincount([ds.plan(n).image for n in range(3400)], minlength=2)
    assert 5 <= picks[0] <= 40  # expected 3400 / 170 = 20


def test_corrupt_file_skipped_with_warning(tmp_path):
    folder = _hr_folder(tmp_path)
    (folder / "broken.png").write_bytes(b"this is not a png at all" * 10)
    with pytest.warns(UserWarning) as record:
        ds = _patches(folder)
    assert ds.skipped_unreadable == 1 and len(ds.sources) == 2
    assert sum("broken.png" in str(w.message) for w in record) == 1


def test_data_errors_name_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        _patches(tmp_path / "empty")
    with pytest.raises(DataError, match="missing_dir"):
        _patches(tmp_path / "missing_dir")
    tiny = _hr_folder(tmp_path, sizes=((8, 8), (12, 30)), name="tiny")
    (tiny / "junk.png").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="tiny") as err:
            _patches(tiny)
    assert "3 found" in str(err.value) and "2 smaller" in str(err.value) and "1 unreadable" in str(err.value)
    with pytest.raises(DataError, match="multiple of scale"):
        _patches(tiny, hr_patch=15)


def test_paired_folders_matched_by_stem(tmp_path):
    hr_imgs = {stem: _noise(32, 40, seed=i) for i, stem in enumerate(["0001", "0002", "0003", "0004"])}
    for stem, img in hr_imgs.items():
        _save(tmp_path / "hr" / f"{stem}.png", img)
    lr_0001 = _noise(16, 20, seed=11)  # deliberately NOT the bicubic of its HR: the file must be used as is
    _save(tmp_path / "lr" / "0001x2.png", lr_0001)
    _save(tmp_path / "lr" / "0002.png", _noise(16, 20, seed=12))
    _save(tmp_path / "lr" / "0003_x2.png", _noise(15, 20, seed=13))  # wrong size
    _save(tmp_path / "lr" / "0005x2.png", _noise(16, 20, seed=14))  # no HR partner
    with pytest.warns(UserWarning) as record:
        ds = _patches(tmp_path / "hr", lr_dirs=[str(tmp_path / "lr")])
    assert [(h.name, lr.name) for h, lr in ds.sources] == [("0001.png", "0001x2.png"), ("0002.png", "0002.png")]
    assert ds.skipped_mismatch == 1 and ds.unmatched == 2  # 0004.png and 0005x2.png
    messages = [str(w.message) for w in record]
    assert any("0003_x2.png" in m and "0003.png" in m for m in messages)
    assert any("2 file(s) without a partner" in m for m in messages)
    n = next(n for n in range(100) if ds.plan(n).image == 0)
    plan, (lr, hr) = ds.plan(n), ds[n]
    np.testing.assert_array_equal(_as_uint8(lr), lr_0001[plan.top: plan.top + 8, plan.left: plan.left + 8])
    np.testing.assert_array_equal(_as_uint8(hr), hr_imgs["0001"][plan.top * 2: plan.top * 2 + 16,
                                                                 plan.left * 2: plan.left * 2 + 16])


@pytest.mark.parametrize("world_size", [1, 2])
def test_sample_indices_and_sampler_cover_each_global_batch_once(world_size):
    batch_size, steps = 6, 3
    for step in range(steps):
        shares = [list(sample_indices(step, batch_size, rank, world_size)) for rank in range(world_size)]
        assert sorted(sum(shares, [])) == list(range(step * batch_size, (step + 1) * batch_size))
    per_rank = [list(StepSampler(batch_size=batch_size, start_step=0, stop_step=steps, rank=r, world_size=world_size))
                for r in range(world_size)]
    assert sorted(sum(per_rank, [])) == list(range(steps * batch_size))
    assert len(StepSampler(batch_size=batch_size, start_step=1, stop_step=steps, world_size=world_size)) == \
        (steps - 1) * batch_size // world_size
    if world_size == 2:
        assert list(sample_indices(1, batch_size, 1, 2)) == [9, 10, 11]
    with pytest.raises(DataError, match="batch_size"):
        sample_indices(0, 5, 0, 2)


def _batches(ds, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(make_loader(ds, batch_size=4, **kwargs))


def test_loader_workers_and_resume_match(tmp_path):
    ds = _patches(_hr_folder(tmp_path), augment=True)
    straight = _batches(ds, start_step=0, stop_step=4, num_workers=0)
    assert len(straight) == 4 and straight[0][0].shape == (4, 3, 8, 8) and straight[0][1].shape == (4, 3, 16, 16)
    for k, (lr, hr) in enumerate(straight):  # batch k holds exactly samples 4k .. 4k+3
        assert torch.equal(hr, torch.stack([ds[n][1] for n in range(4 * k, 4 * k + 4)]))
    with_workers = _batches(ds, start_step=0, stop_step=4, num_workers=2)
    resumed = _batches(ds, start_step=2, stop_step=4, num_workers=0)
    rank1 = _batches(ds, start_step=0, stop_step=4, num_workers=0, rank=1, world_size=2)
    for a, b in zip(straight, with_workers, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for a, b in zip(straight[2:], resumed, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for a, b in zip(straight, rank1, strict=True):  # rank 1 of 2 gets the second half of each global batch
        assert torch.equal(a[1][2:], b[1])


def test_read_rgb_gray_16bit_and_exif(tmp_path):
    gray = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 16-bit levels 0, 257, ... 65535
    Image.fromarray(gray).save(tmp_path / "g16.png")
    rgb = read_rgb8(tmp_path / "g16.png")[0]
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 1], np.arange(256, dtype=np.uint8).reshape(16, 16))
    img = _noise(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF Orientation 6: the camera was rotated, display rotated 90 degrees clockwise
    Image.fromarray(img).save(tmp_path / "rot.png", exif=exif)
    np.testing.assert_array_equal(read_rgb8(tmp_path / "rot.png")[0], np.rot90(img, -1))


def test_load_validation(tmp_path):
    _save(tmp_path / "val" / "b_color.png", _noise(21, 18, seed=1))
    gray = np.random.default_rng(2).integers(0, 256, size=(20, 24), dtype=np.uint8)
    _save(tmp_path / "val" / "a_gray.png", gray)
    (tmp_path / "val" / "c_broken.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="c_broken.jpg"):
        images = load_validation(str(tmp_path / "val"), scale=4)
    assert [im.name for im in images] == ["a_gray", "b_color"]
    name, lr, hr = images[1]
    assert lr.shape == (1, 3, 5, 4) and hr.shape == (1, 3, 20, 16)
    hr_u8 = modcrop(_noise(21, 18, seed=1), 4)
    np.testing.assert_array_equal(_as_uint8(hr[0]), hr_u8)
    np.testing.assert_array_equal(_as_uint8(lr[0]), bicubic_downscale(hr_u8, 4))
    gray_hr = images[0].hr[0]
    assert gray_hr.shape == (3, 20, 24) and torch.equal(gray_hr[0], gray_hr[1]) and torch.equal(gray_hr[0], gray_hr[2])
    np.testing.assert_array_equal(_as_uint8(gray_hr)[..., 0], gray)
    assert [im.name for im in load_validation(str(tmp_path / "val"), scale=2, max_images=1)] == ["a_gray"]
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="none"):
        load_validation(str(tmp_path / "none"), scale=2)
    with pytest.raises(DataError, match="absent"):
        load_validation(str(tmp_path / "absent"), scale=2)
