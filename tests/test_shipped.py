"""The README's main command on a fresh clone: the shipped ensemble upscales examples/."""
import shutil
from pathlib import Path

from PIL import Image

from mgsrgan.cli.infer import main

ROOT = Path(__file__).resolve().parents[1]


def one_example(tmp_path: Path, name: str) -> Path:
    """A folder holding examples/<name> alone: the README block test runs each command on every example, and
    a line here costs up to six member passes per image."""
    source = tmp_path / "in"
    source.mkdir()
    shutil.copyfile(ROOT / "examples" / name, source / name)
    return source


def test_readme_main_command_upscales_the_examples_with_the_shipped_ensemble(tmp_path, capsys):
    assert main(["--input_dir", str(ROOT / "examples"), "--output_dir", str(tmp_path), "--uncertainty"]) == 0
    captured = capsys.readouterr()
    assert "4 written, 0 skipped, 0 failed" in captured.out
    assert "note:" not in captured.err  # no preview notice any more (weights/NOTICE.txt is printed when present)
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"):  # the JPEG keeps its format
        lr_img, sr_img = Image.open(ROOT / "examples" / name), Image.open(tmp_path / name)
        assert sr_img.size == (2 * lr_img.size[0], 2 * lr_img.size[1]) and sr_img.mode == "RGB"
        assert (tmp_path / f"{Path(name).stem}_uncertainty.png").is_file()


def test_shipped_config_is_config_scaled_as_trained():
    """weights/x2/MODEL_CARD.md says the shipped members are config_scaled.yaml's: the run's saved config must resolve
    to the same values, the run name (a command-line choice) aside."""
    from dataclasses import asdict

    from mgsrgan.config import load_config

    shipped = asdict(load_config(ROOT / "weights" / "x2" / "config.yaml"))  # the run's, as written
    preset = asdict(load_config(ROOT / "config_scaled.yaml"))
    shipped["train"].pop("name"), preset["train"].pop("name")
    assert shipped == preset
    assert shipped["train"]["members"] == 3 and shipped["model"]["scale"] == 2


# What the shipped phase-1 run recorded differently from config_scaled.yaml. It is the continuation (MODEL_CARD
# "Reproduce": `--name x2-cont`, a warm restart from the 1,200-step members with its own seed, 500 steps at a
# 2e-4 cosine, no phase 2, validation every 100 and checkpoints every 50 steps); phase 2 then ran from it with
# `--pretrained` on config_scaled.yaml as it stands, so the gan checkpoints agree with the preset.
PRETRAIN_RUN_DIFFERS = {"train.seed", "train.pretrain_steps", "train.gan_iterations", "train.g_learning_rate",
                        "train.init_from", "train.val_every", "train.checkpoint_every"}


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: dotted keys, as --set names them."""
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_config_inside_the_shipped_checkpoints_is_config_scaled():
    """The resolved config saved inside every shipped checkpoint (what the run trained with), against
    config_scaled.yaml resolved today: on every
    key both have (fields added since, absent from the saved one, and the run name aside) the gan checkpoints agree
    and the pretrain ones differ exactly on PRETRAIN_RUN_DIFFERS; a re-drawn gan slot on its seed and member count."""
    from mgsrgan.config import config_to_dict, load_config
    from mgsrgan.io.checkpoint import read_meta

    preset = _flat(config_to_dict(load_config(ROOT / "config_scaled.yaml")))
    paths = sorted((ROOT / "weights" / "x2").glob("member_*/*.safetensors"))
    assert [p.stem for p in paths] == ["gan", "pretrain"] * 3
    for path in paths:
        meta = read_meta(path)
        saved = _flat(meta["config"])  # every field it had
        assert not set(saved) - set(preset), f"{path}: keys today's config does not know"
        compared = set(saved) - {"train.name"}
        differ = {key for key in compared if saved[key] != preset[key]}
        expected = set() if path.stem == "gan" else PRETRAIN_RUN_DIFFERS
        if "redrawn_from" in meta:  # a slot re-drawn by a one-member phase-2 run (ship_weights.py --gan-into)
            # its own seed and member count, and a pick guard stricter than the preset's where the re-draw set one
            # (MODEL_CARD "Reproduce" and docs/experiments.md section 8: `--set train.gan_select_max_artifact=1.5`)
            stricter = {key for key in differ if key.startswith("train.gan_select_max_") and saved[key] < preset[key]}
            expected = {"train.seed", "train.members"} | stricter
            assert saved["train.members"] == 1 and saved["train.seed"] == meta["seed"] != preset["train.seed"]
        assert differ == expected, {key: (saved[key], preset[key]) for key in differ ^ expected}
        assert {"train.pretrain_steps", "train.gan_iterations", "model.channels", "loss.pixel"} <= compared


def test_readme_gan_and_adaptive_commands_work_on_the_shipped_members(tmp_path, capsys):
    """The README's --checkpoint gan and --alpha 1 --adaptive 0.8 lines; outputs sit between their two sources."""
    import numpy as np

    source = one_example(tmp_path, "coffee.png")
    outputs = {}
    for name, extra in (("pixel", []), ("gan", ["--checkpoint", "gan"]), ("fused", ["--alpha", "1", "--adaptive", "0.8"])):
        out = tmp_path / name
        assert main(["--input_dir", str(source), "--output_dir", str(out), *extra]) == 0
        assert "1 written, 0 skipped, 0 failed" in capsys.readouterr().out
        outputs[name] = np.asarray(Image.open(out / "coffee.png"), dtype=np.float64)
    pixel, gan, fused = outputs["pixel"], outputs["gan"], outputs["fused"]
    assert np.abs(gan - pixel).mean() > 0.05  # the GAN members are other networks
    # per pixel the fusion lies between the two ensembles (up to rounding): a convex blend
    low, high = np.minimum(pixel, gan) - 1, np.maximum(pixel, gan) + 1
    assert ((fused >= low) & (fused <= high)).mean() > 0.999


def test_readme_x4_command_upscales_the_examples_with_the_shipped_x4_ensemble(tmp_path, capsys):
    """`--scale 4` picks weights/x4, whose saved config is config_scaled_x4.yaml (run name aside)."""
    from dataclasses import asdict

    from mgsrgan.config import load_config

    source, out = one_example(tmp_path, "astronaut.png"), tmp_path / "out"
    assert main(["--input_dir", str(source), "--output_dir", str(out), "--scale", "4"]) == 0
    assert "1 written, 0 skipped, 0 failed" in capsys.readouterr().out
    lr_img, sr_img = Image.open(source / "astronaut.png"), Image.open(out / "astronaut.png")
    assert sr_img.size == (4 * lr_img.size[0], 4 * lr_img.size[1])
    shipped = asdict(load_config(ROOT / "weights" / "x4" / "config.yaml"))
    preset = asdict(load_config(ROOT / "config_scaled_x4.yaml"))
    shipped["train"].pop("name"), preset["train"].pop("name")
    assert shipped == preset and shipped["model"]["scale"] == 4
