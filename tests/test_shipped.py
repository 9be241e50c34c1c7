"""The README's main command on a fresh clone: the shipped ensemble upscales examples/."""
import shutil
from pathlib import Path

import pytest
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


def _flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: dotted keys, as --set names them."""
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


RUN_PLACE = {"train.name", "train.out_dir"}  # where the campaign ran it, not what it trained


def _stage_config(name: str) -> dict:
    """A campaign stage's config as its plan resolves it today (configs/campaign.yaml), flattened."""
    from mgsrgan.config import config_to_dict, load_config
    from mgsrgan.train.campaign import load_plan, stage_of

    stage = stage_of(load_plan(ROOT / "configs" / "campaign.yaml"), name)
    return _flat(config_to_dict(load_config(ROOT / stage.config, stage.set)))


@pytest.mark.parametrize("folder", ["x2", "x4", "x2-real"])
def test_a_shipped_folder_is_the_campaign_stage_its_record_names(folder):
    """weights/<folder> is a campaign stage's shipment (MODEL_CARD.md): a GAN stage's three members, or an SRResNet
    stage's one network (a real-photo model whose GAN members are not shipped yet). Its config is that stage's, and
    the config inside every checkpoint is the run's that wrote it: the GAN stage's for gan, the SRResNet stage's for
    pretrain (on every key the saved one has; fields added since are absent from it). An SRResNet stage grown from an
    earlier one names that stage's shipping folder in train.init_from."""
    import json

    from mgsrgan.config import config_to_dict, load_config
    from mgsrgan.io.checkpoint import read_meta
    from mgsrgan.train.campaign import load_plan, stage_of

    shipped_dir = ROOT / "weights" / folder
    if folder.endswith("-real") and not shipped_dir.is_dir():
        pytest.skip(f"no {folder} model shipped in this checkout")
    record = json.loads((shipped_dir / "campaign.json").read_text())
    plan = load_plan(ROOT / "configs" / "campaign.yaml")
    stage = stage_of(plan, record["stage"])
    pixel_stage = stage_of(plan, stage.gan_from) if stage.gan_from else stage
    expected = {"pretrain": _stage_config(pixel_stage.name)}
    if stage.gan_from:
        expected["gan"] = _stage_config(stage.name)
    shipped = _flat(config_to_dict(load_config(shipped_dir / "config.yaml")))
    members = 3 if stage.gan_from else 1
    paths = sorted(shipped_dir.glob("member_*/*.safetensors"))
    assert [p.stem for p in paths] == (["gan", "pretrain"] if stage.gan_from else ["pretrain"]) * members
    assert f"x{shipped['model.scale']}" == folder.removesuffix("-real")
    assert shipped["train.members"] == members and len(record.get("members", [0])) == members
    for path, saved in [(shipped_dir / "config.yaml", shipped)] + [(p, _flat(read_meta(p)["config"])) for p in paths]:
        side = path.stem if path.suffix == ".safetensors" else ("gan" if stage.gan_from else "pretrain")
        assert not set(saved) - set(expected[side]), f"{path}: keys today's config does not know"
        if side == "pretrain" and pixel_stage.init_from:  # the campaign sets it to the earlier stage's folder
            assert Path(saved.pop("train.init_from")).parts[-3:] == ("weights", "campaign", pixel_stage.init_from)
        differ = {key for key in set(saved) - RUN_PLACE if saved[key] != expected[side][key]}
        assert not differ, {key: (saved[key], expected[side][key]) for key in differ}
        assert {"train.pretrain_steps", "model.channels", "model.num_blocks", "loss.pixel"} <= set(saved)


def test_readme_gan_and_adaptive_commands_work_on_the_shipped_members(tmp_path, capsys):
    """The README's --checkpoint gan and --alpha 1 --adaptive 0.8 lines; outputs sit between their two sources."""
    import numpy as np

    source = one_example(tmp_path, "coffee.png")
    outputs = {}
    for name, extra in (("pixel", []), ("gan", ["--checkpoint", "gan"]),
                        ("fused", ["--alpha", "1", "--adaptive", "0.8"])):
        out = tmp_path / name
        assert main(["--input_dir", str(source), "--output_dir", str(out), *extra]) == 0
        assert "1 written, 0 skipped, 0 failed" in capsys.readouterr().out
        outputs[name] = np.asarray(Image.open(out / "coffee.png"), dtype=np.float64)
    pixel, gan, fused = outputs["pixel"], outputs["gan"], outputs["fused"]
    assert np.abs(gan - pixel).mean() > 0.05  # the GAN members are other networks
    # per pixel the fusion lies between the two ensembles (up to rounding): a convex blend
    low, high = np.minimum(pixel, gan) - 1, np.maximum(pixel, gan) + 1
    assert ((fused >= low) & (fused <= high)).mean() > 0.999


def test_readme_x4_command_upscales_the_examples_with_the_shipped_x4_model(tmp_path, capsys):
    """`--scale 4` picks weights/x4 (its config: test_a_shipped_folder_is_the_campaign_stage_its_record_names)."""
    from mgsrgan.config import load_config

    source, out = one_example(tmp_path, "astronaut.png"), tmp_path / "out"
    assert main(["--input_dir", str(source), "--output_dir", str(out), "--scale", "4"]) == 0
    assert "1 written, 0 skipped, 0 failed" in capsys.readouterr().out
    lr_img, sr_img = Image.open(source / "astronaut.png"), Image.open(out / "astronaut.png")
    assert sr_img.size == (4 * lr_img.size[0], 4 * lr_img.size[1])
    assert load_config(ROOT / "weights" / "x4" / "config.yaml").model.scale == 4
