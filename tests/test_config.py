"""Strict config loading: unknown keys, types, impossible values, overrides, and the shipped configs."""
from pathlib import Path

import pytest
import torch

from mgsrgan.config import ConfigError, config_from_dict, dump_config, load_config
from mgsrgan.models.discriminator import Discriminator
from mgsrgan.models.generator import Generator

ROOT = Path(__file__).resolve().parents[1]
BASE = {"data": {"train_dirs": ["somewhere"]}}


def with_section(section: str, **values) -> dict:
    raw = {"data": dict(BASE["data"])}
    raw.setdefault(section, {}).update(values)
    return raw


def test_unknown_key_names_file_key_and_the_closest_valid_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train_dirs: [x]\ntrain:\n  g_learning_rat: 0.001\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: unknown key train.g_learning_rat; did you mean train.g_learning_rate?"


def test_unknown_key_in_the_wrong_section_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown key model.batch_size; did you mean data.batch_size\?"):
        config_from_dict(with_section("model", batch_size=4))


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"unknown key trian; did you mean train\?"):
        config_from_dict({**BASE, "trian": {}})


@pytest.mark.parametrize("section,key,value,message", [
    ("model", "scale", 3, "model.scale: must be 2, 4 or 8, got 3"),
    ("model", "scale", "4", "model.scale: expected an integer, got '4'"),
    ("data", "hr_patch", 98, "data.hr_patch: 98 is not divisible by model.scale=4"),
    ("train", "g_updates", 0, "train.g_updates: must be at least 1, got 0"),
    ("train", "d_updates", -1, "train.d_updates: must be at least 1, got -1"),
    ("train", "schedule", "parallel", "train.schedule: 'parallel' is not one of 'sequential', 'lockstep'"),
    ("loss", "content_layer", "6_1", "loss.content_layer: unknown layer '6_1'"),
    ("data", "augment", "yes", "data.augment: expected true or false, got 'yes'"),
    ("train", "ema_decay", 1.0, "train.ema_decay: must be in [0, 1) (0 = off), got 1.0"),
    ("train", "member_data", "bagging", "train.member_data: 'bagging' is not one of 'independent', 'shared', "
                                        "'bootstrap'"),
    ("loss", "adversarial", "wgan", "loss.adversarial: 'wgan' is not one of 'standard', 'relativistic'"),
    ("loss", "grid_weight", -1.0, "loss: loss weights must be 0 or more"),
    ("loss", "content_layers", ["1_2", "9_9"], "loss.content_layers: unknown layer '9_9'"),
    ("loss", "content_layers", ["1_2"], "loss.content_layer_weights: 0 weights for 1 loss.content_layers"),
    ("data", "val_holdout", -2, "data.val_holdout: must be 0 or more, got -2"),
])
def test_wrong_types_and_impossible_values_fail_before_any_work(section, key, value, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(with_section(section, **{key: value}), "c.yaml")
    assert str(err.value).startswith(f"c.yaml: {message}")


def test_set_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train_dirs: [x]\n")
    cfg = load_config(path, ["train.members=5", "loss.adv_weight=0.01", "data.train_dirs=[a, b]",
                             "loss.vgg_weights=stlpips", "loss.content_layer=5_3"])
    assert cfg.train.members == 5 and cfg.loss.adv_weight == 0.01 and cfg.data.train_dirs == ["a", "b"]
    assert cfg.loss.content_layer == "5_3"  # text for a text field, although YAML 1.1 reads 5_3 as 53
    with pytest.raises(ConfigError, match="did you mean train.members"):
        load_config(path, ["train.member=5"])


def test_an_int_is_accepted_where_a_float_is_expected():
    assert config_from_dict(with_section("loss", adv_weight=1)).loss.adv_weight == 1.0


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ROOT / "config_scaled.yaml")
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("name", ["config.yaml", "config_scaled.yaml", "configs/smoke.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / name)
    assert cfg.data.hr_patch % cfg.model.scale == 0


def test_paper_config_matches_ledig_2017():
    cfg = load_config(ROOT / "config.yaml")
    assert (cfg.model.scale, cfg.model.num_blocks, cfg.model.channels) == (4, 16, 64)
    assert (cfg.data.hr_patch, cfg.data.batch_size, cfg.train.g_learning_rate) == (96, 16, 1e-4)
    assert cfg.loss.content_layer == "5_4" and abs(cfg.loss.content_rescale - 1 / 12.75) < 1e-12
    assert cfg.loss.adv_weight == 1e-3 and cfg.train.members == 3


def test_scaled_config_is_x2_64_to_128():
    cfg = load_config(ROOT / "config_scaled.yaml")
    assert cfg.model.scale == 2 and cfg.data.hr_patch % cfg.model.scale == 0
    m = cfg.model
    generator = Generator(scale=m.scale, num_blocks=m.num_blocks, channels=m.channels, global_skip=m.global_skip)
    discriminator = Discriminator(channels=m.d_channels, dense=m.d_dense, leaky_slope=m.leaky_slope, pool=m.d_pool)
    with torch.no_grad():
        sr_img = generator.eval()(torch.rand(1, 3, 64, 64))
        assert sr_img.shape == (1, 3, 128, 128)  # 64x64 -> 128x128, the preset's use
        assert discriminator.eval()(sr_img).shape == (1,)  # one logit: D pools any patch side to d_pool^2


def test_new_keys_get_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown key train.ema_decy; did you mean train.ema_decay\?"):
        config_from_dict(with_section("train", ema_decy=0.9))
    with pytest.raises(ConfigError, match=r"unknown key loss.grid_weights; did you mean loss.grid_weight\?"):
        config_from_dict(with_section("loss", grid_weights=1.0))


def test_a_bad_set_value_names_set_not_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  members: 2\n")
    with pytest.raises(ConfigError, match=r"^--set: train.members: expected an integer, got 'abc'$"):
        load_config(path, ["train.members=abc"])
    path.write_text("train:\n  members: abc\n")
    with pytest.raises(ConfigError, match=r"c.yaml: train.members: expected an integer"):
        load_config(path)


@pytest.mark.parametrize("name", ["config.yaml", "config_scaled.yaml", "config_scaled_x4.yaml"])
def test_presets_validate_on_held_out_training_images_never_a_test_set(name):
    """Set5, Set14 and BSD100 are reported as test sets, so validation (the best checkpoint, weighted and best) must
    not select on them: each preset holds images out of its own training folders instead (data.val_holdout)."""
    from mgsrgan.train.data import holdout_paths

    cfg = load_config(ROOT / name)
    assert cfg.data.val_dir == "" and cfg.data.val_holdout > 0
    if (ROOT / cfg.data.train_dirs[-1]).is_dir():  # ../shared/data, where present: the split is real images
        folder = ROOT / cfg.data.train_dirs[-1]
        held_out = holdout_paths([str(ROOT / d) for d in cfg.data.train_dirs], cfg.data.val_holdout)
        assert len(held_out) == cfg.data.val_holdout and all(folder in p.parents for p in held_out)
