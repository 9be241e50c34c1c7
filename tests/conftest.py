"""Helpers shared by several test modules (import them from here, never from another test module): tiny
generated images, tiny configs and runs, and the evaluation protocol written out by hand."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mgsrgan.config import config_from_dict
from mgsrgan.evaluate.metrics import psnr, ssim, tensor_to_uint8
from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.io.degradation import bicubic_downscale, modcrop
from mgsrgan.models.generator import Generator
from mgsrgan.train.data import TrainPatches, load_validation
from mgsrgan.train.loop import Context
from mgsrgan.train.runlog import RunLog

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2  # the tiny evaluation runs are x2
VAL_PSNR = (24.0, 25.0)  # validation PSNRs recorded in the tiny runs' checkpoints (weighted / best strategies)


def write_images(folder: Path, count: int = 3, size: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(count):
        y, x = np.mgrid[0:size, 0:size]
        base = 0.5 + 0.4 * np.sin(x / (2 + i) + y / 5.0)[..., None] * np.array([1.0, 0.7, 0.4])
        img = np.clip(base + rng.normal(0, 0.03, (size, size, 3)), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def tiny_config(tmp_path: Path, **train_overrides) -> dict:
    images = write_images(tmp_path / "images")
    train_section = {"members": 2, "pretrain_steps": 2, "gan_iterations": 1, "val_every": 0, "checkpoint_every": 1,
                     "log_every": 1, "out_dir": str(tmp_path / "runs"), "g_learning_rate": 1e-3,
                     "d_learning_rate": 1e-3}
    train_section.update(train_overrides)
    return {"model": {"scale": 2, "num_blocks": 1, "channels": 8, "d_channels": 8, "d_dense": 16, "d_pool": 2},
            "data": {"train_dirs": [str(images)], "val_dir": str(images), "hr_patch": 16, "batch_size": 2,
                     "num_workers": 0},
            "loss": {"content_layer": "2_2", "vgg_weights": "random"},
            "train": train_section, "runtime": {"device": "cpu"}}


def make_context(raw: dict, run_dir: Path) -> Context:
    cfg = config_from_dict(raw)
    run_dir.mkdir(parents=True, exist_ok=True)
    d = cfg.data
    dataset = TrainPatches(hr_dirs=d.train_dirs, scale=cfg.model.scale, hr_patch=d.hr_patch, augment=True,
                           seed=cfg.train.seed)
    validation = load_validation(d.val_dir, cfg.model.scale) if d.val_dir else []
    return Context(cfg=cfg, run_dir=run_dir, device=torch.device("cpu"), dataset=dataset, validation=validation,
                   log=RunLog(run_dir, tensorboard=False, quiet=True), progress=False)


def tiny_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    generator = Generator(scale=SCALE, num_blocks=1, channels=8)
    with torch.no_grad():  # nudge the output towards the input range so scores are not all at the floor
        generator.tail.bias.fill_(0.5)
    return generator.eval()


def save_tiny_run(run: Path, *, val: bool = True, checkpoint: str = "best", seed: int = 10) -> list[Generator]:
    """run/member_<k>/<checkpoint>.safetensors for 2 tiny x2 members, member k's weights from seed + k."""
    generators = []
    for member, psnr_value in enumerate(VAL_PSNR):
        generator = tiny_generator(seed=seed + member)
        (run / f"member_{member}").mkdir(parents=True)
        meta = {"arch": {"scale": SCALE, "num_blocks": 1, "channels": 8}, "member": member, "seed": seed + member,
                "phase": "pretrain", "step": 5, "val": {"psnr": psnr_value, "ssim": 0.5} if val else None,
                "config": {}}
        tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
        save_checkpoint(run / f"member_{member}" / f"{checkpoint}.safetensors", tensors, meta)
        generators.append(generator)
    return generators


def save_tiny_images(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(40, 220, size=(8, 9, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # blocky, 32x36
    images = {"a": base[:31, :35], "b": np.ascontiguousarray(base[::-1, :, ::-1][:30, :34]),
              "g": base[:29, :33, 1].copy()}  # odd sizes exercise modcrop; "g" is 8-bit gray
    for name, img in images.items():
        Image.fromarray(img).save(folder / f"{name}.png")
    return images


def sr_by_hand(upscale_tensor, hr_img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The protocol written out: modcrop, PIL bicubic LR, network on [0, 1] RGB, clip/round -> (SR, HR) uint8."""
    hr_img = modcrop(hr_img, SCALE)
    lr_img = bicubic_downscale(hr_img, SCALE)
    rgb = np.stack([lr_img] * 3, axis=2) if lr_img.ndim == 2 else lr_img
    with torch.no_grad():
        sr = upscale_tensor(torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255)
    sr_img = tensor_to_uint8(sr)
    if hr_img.ndim == 2:
        sr_img = np.asarray(Image.fromarray(sr_img).convert("L"))
    return sr_img, hr_img


def scores_by_hand(upscale_tensor, hr_img: np.ndarray) -> tuple[float, float]:
    sr_img, hr_img = sr_by_hand(upscale_tensor, hr_img)
    return psnr(sr_img, hr_img, crop_border=SCALE), ssim(sr_img, hr_img, crop_border=SCALE)


def rgb_crop(img: np.ndarray) -> np.ndarray:
    """What the perceptual columns see: `SCALE` border pixels cropped, gray as three equal channels."""
    img = img[SCALE:-SCALE, SCALE:-SCALE]
    return np.ascontiguousarray(np.stack([img] * 3, axis=2) if img.ndim == 2 else img)


# --- The shipped models' published numbers: the model cards' and the README's tables against the files they come from

# A card or README row's label, its scale prefix ("x2 ") and its parenthetical left out -> (source, model) of the
# files the numbers come from (see shipped_scores)
CARD_ROWS = {
    "pixel-loss SRResNet": ("pretrain", "member_0"),  # a campaign model: one network (its K pretrain files are copies)
    "GAN ensemble mean": ("gan", "ensemble-mean"),
    "GAN member_1": ("gan", "member_1"),
    "GAN member_2": ("gan", "member_2"),
    "GAN ensemble, texture-preserving mean": ("gan", "ensemble-texture"),
    "GAN ensemble, perceptual weights": ("gan", "ensemble-perceptual"),
    "GAN member_0": ("gan", "member_0"),
    "bicubic": ("peers", "bicubic"),
    "FSRCNN": ("peers", "FSRCNN"),
    "ESPCN": ("peers", "ESPCN"),
    "LapSRN": ("peers", "LapSRN"),
    "FSRCNN, paper": ("paper", "FSRCNN"),
    "LapSRN, paper": ("paper", "LapSRN"),
}


@lru_cache(maxsize=None)
def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def shipped_scores(scale: int, source: str, model: str, set_name: str) -> dict:
    """One model's scores on one test set, from weights/x<scale>/: `source` pretrain or gan reads
    eval_<source>_{set5_set14,bsd100}.json (what evaluate.py wrote), peers reads peers_x<scale>/peers.json (bicubic
    and the OpenCV models, by tools/peers.py), paper the PSNR a peer's paper reports (in the same file)."""
    folder = ROOT / "weights" / f"x{scale}"
    if source in ("peers", "paper"):
        peers = _json(folder / f"peers_x{scale}" / "peers.json")
        if source == "paper":
            return {"psnr": peers["paper_psnr"][f"{model} x{scale}"][set_name]}
        return peers["results"][str(scale)][set_name][model]
    part = "bsd100" if set_name == "BSD100" else "set5_set14"
    return _json(folder / f"eval_{source}_{part}.json")["sets"][set_name]["models"][model]


def metric_cell(scores: dict) -> str:
    """Y PSNR / Y SSIM / ST-LPIPS-Alex as the tables print them; a paper figure is its PSNR alone."""
    if set(scores) == {"psnr"}:
        return f"{scores['psnr']:.2f}"
    return f"{scores['psnr']:.2f} / {scores['ssim']:.4f} / {scores['stlpips_alex']:.4f}"


def guard_cell(scores: dict) -> str:
    """Periodic-artifact amplitude (the HR's) / colour shift R, G, B, in 8-bit levels, as the tables print them."""
    return (f"{scores['artifact']:.3f} ({scores['artifact_hr']:.3f}) / "
            f"{scores['shift_r']:+.2f}, {scores['shift_g']:+.2f}, {scores['shift_b']:+.2f}")


def card_row(label: str) -> tuple[str, str]:
    """(source, model) of a table row's label: "x2 GAN member_0 (the best member)" -> ("gan", "member_0")."""
    name = re.sub(r"\s*\(.*\)$", "", re.sub(r"^x[24] ", "", label.strip()))
    assert name in CARD_ROWS, f"table row {label!r}: which file does it come from? (tests/conftest.py CARD_ROWS)"
    return CARD_ROWS[name]


def markdown_tables(text: str, heading: str) -> list[list[list[str]]]:
    """The Markdown tables of the section whose heading line starts with `heading` (up to the next heading of its
    level or higher), each as its body rows of cells (header and rule left out)."""
    level = len(heading) - len(heading.lstrip("#"))
    found = re.search(rf"^{re.escape(heading)}.*\n", text, re.M)
    assert found, f"no section {heading!r}"
    end = re.search(rf"^#{{1,{level}}} ", text[found.end():], re.M)
    section = text[found.end():found.end() + end.start()] if end else text[found.end():]
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            tables.append(rows[2:])
            rows = []
    return tables
