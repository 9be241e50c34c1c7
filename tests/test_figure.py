"""tools/figure.py: a tiny run and a tiny image give a PNG grid of the expected size, tiles and PSNRs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools.figure import GAP, LABEL_HEIGHT, Crop, Tile, auto_zoom, grid_size, main, render_grid
from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.models.generator import Generator
from mgsrgan.evaluate.metrics import psnr

SCALE = 2
CROP = (4, 6, 12, 10)  # y, x, h, w in HR pixels


def _save_run(run: Path, *, members: int, checkpoints: tuple[str, ...]) -> None:
    for member in range(members):
        for checkpoint in checkpoints:
            torch.manual_seed(100 * member + len(checkpoint))
            generator = Generator(scale=SCALE, num_blocks=1, channels=8)
            with torch.no_grad():
                generator.tail.bias.fill_(0.5)
            meta = {"schema_version": 1, "arch": {"scale": SCALE, "num_blocks": 1, "channels": 8}, "member": member,
                    "seed": member, "phase": checkpoint, "step": 3, "val": None, "config": {}}
            (run / f"member_{member}").mkdir(parents=True, exist_ok=True)
            save_checkpoint(run / f"member_{member}" / f"{checkpoint}.safetensors",
                            {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)


@pytest.fixture()
def image(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(30, 230, size=(6, 7, 3)), np.ones((4, 4, 1))).astype(np.uint8)[:23, :27]  # odd size
    Image.fromarray(img).save(tmp_path / "tiny.png")
    return tmp_path / "tiny.png", img


def _lines(stdout: str) -> list[list[str]]:
    return [line.split(" | ") for line in stdout.strip().splitlines()]


def test_figure_grid_size_tiles_and_psnr(tmp_path, image, capsys):
    path, img = image
    _save_run(tmp_path / "run", members=2, checkpoints=("pretrain", "gan"))
    out = tmp_path / "fig.png"
    code = main(["--run", str(tmp_path / "run"), "--image", str(path), "--crop", *map(str, CROP), "--device", "cpu",
                 "--columns", "3", "--adaptive", "0.8", "--guided", "0.5", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    labels = _lines(captured.out)
    names = [label[0] for label in labels]
    assert names[:2] == ["HR tiny.png", "bicubic (PIL)"]
    assert names[2:6] == ["member_0 (pretrain)", "member_1 (pretrain)", "ensemble mean (K=2)", "GAN ensemble mean (gan)"]
    assert names[6:8] == ["adaptive fusion (c0 0.8)", "guided fusion (tau 0.5)"]
    assert names[8].startswith("uncertainty") and len(names) == 9
    zoom = auto_zoom(Crop(*CROP))
    assert zoom == 256 // 12
    with Image.open(out) as figure:  # 9 tiles in 3 columns: 3 rows
        assert figure.size == grid_size(9, tile_h=12 * zoom, tile_w=10 * zoom, columns=3)
        assert figure.size == (3 * 10 * zoom + 4 * GAP, 3 * (12 * zoom + LABEL_HEIGHT) + 4 * GAP)
        hr_tile = np.asarray(figure.convert("RGB"))[GAP:GAP + 12 * zoom:zoom, GAP:GAP + 10 * zoom:zoom]
    hr_img = modcrop(img, SCALE)
    y, x, h, w = CROP
    np.testing.assert_array_equal(hr_tile, hr_img[y:y + h, x:x + w])  # nearest-neighbour enlargement, exact
    bicubic = bicubic_upscale(bicubic_downscale(hr_img, SCALE), SCALE)[y:y + h, x:x + w]
    expected = psnr(np.ascontiguousarray(bicubic), hr_img[y:y + h, x:x + w], crop_border=0)
    assert labels[1][1] == f"PSNR {expected:.2f} dB"


def test_single_member_without_gan_skips_with_notes(tmp_path, image, capsys):
    path, _ = image
    _save_run(tmp_path / "run", members=1, checkpoints=("best",))
    out = tmp_path / "fig.png"
    assert main(["--run", str(tmp_path / "run"), "--image", str(path), "--crop", "0", "0", "8", "8",
                 "--checkpoint", "best", "--zoom", "2", "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    labels = [label[0] for label in _lines(captured.out)]
    assert labels[:3] == ["HR tiny.png", "bicubic (PIL)", "the network (best)"]
    assert labels[3].startswith("uncertainty: std over 8 flips")  # one network: its dihedral spread
    assert "note: GAN ensemble skipped" in captured.err
    with Image.open(out) as figure:
        assert figure.size == (4 * 16 + 5 * GAP, 16 + LABEL_HEIGHT + 2 * GAP)


def test_bad_crop_is_one_line_error(tmp_path, image, capsys):
    path, _ = image
    _save_run(tmp_path / "run", members=1, checkpoints=("pretrain",))
    code = main(["--run", str(tmp_path / "run"), "--image", str(path), "--crop", "10", "0", "20", "8",
                 "--device", "cpu", "--out", str(tmp_path / "fig.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --crop 10 0 20 8") and "26x22" in err


def test_render_grid_places_tiles_row_by_row():
    tiles = [Tile(np.full((2, 3, 3), value, np.uint8), (f"t{value}",)) for value in (10, 20, 30)]
    grid = np.asarray(render_grid(tiles, zoom=2, columns=2))
    assert grid.shape == (2 * (4 + LABEL_HEIGHT) + 3 * GAP, 2 * 6 + 3 * GAP, 3)
    assert (grid[GAP:GAP + 4, GAP:GAP + 6] == 10).all()
    assert (grid[GAP:GAP + 4, 2 * GAP + 6:2 * GAP + 12] == 20).all()
    top = 2 * GAP + 4 + LABEL_HEIGHT
    assert (grid[top:top + 4, GAP:GAP + 6] == 30).all()
