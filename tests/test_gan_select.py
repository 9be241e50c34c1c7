"""train.gan_select: the `gan` checkpoint is the phase-2 validation with the lowest held-out ST-LPIPS-Alex that
passes the PSNR and artifact guards, not whatever the phase ended on."""
from __future__ import annotations

import json

import pytest

from mgsrgan.config import ConfigError, config_from_dict
from mgsrgan.io.checkpoint import load_tensors, read_meta
from mgsrgan.train.loop import train
from tests.conftest import make_context, tiny_config


def select_config(tmp_path, **train_overrides):
    raw = tiny_config(tmp_path, members=1, pretrain_steps=2, gan_iterations=3, val_every=1, gan_select="stlpips_alex",
                      gan_select_max_psnr_drop=100.0, gan_select_max_artifact=1e9, gan_select_max_shift=1e9,
                      **train_overrides)
    raw["model"]["global_skip"] = "bicubic"  # outputs near bicubic: Alex distances that differ from step to step
    return raw


def events(run_dir, kind):
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [e for e in lines if e.get("event") == kind]


def test_gan_is_the_lowest_alex_validation_and_is_scored(tmp_path):
    run_dir = tmp_path / "run"
    (member,) = train(make_context(select_config(tmp_path), run_dir), resume=False)
    vals = [e for e in events(run_dir, "val") if e["phase"] == "gan" and e["member"] == 0]
    assert len(vals) >= 3 and all("stlpips_alex" in v and v["artifact_hr"] > 0 for v in vals)
    best = min(vals, key=lambda v: v["stlpips_alex"])
    meta = read_meta(run_dir / "member_0" / "gan.safetensors")
    assert meta["val"]["stlpips_alex"] == pytest.approx(best["stlpips_alex"])  # the perceptual strategy reads it
    assert member.gan_pick["step"] == best["step"] and member.history["gan"]["step"] == best["step"]
    picks = events(run_dir, "gan_pick")
    assert [p["stlpips_alex"] for p in picks] == sorted((p["stlpips_alex"] for p in picks), reverse=True)
    if best["step"] != vals[-1]["step"]:  # the picked weights are not the last ones
        last = load_tensors(run_dir / "member_0" / "last.safetensors", "generator.")
        gan = load_tensors(run_dir / "member_0" / "gan.safetensors", "generator.")
        assert any(not (last[k] == gan[k]).all() for k in gan if k.endswith("weight"))


def test_guards_refuse_every_candidate_then_gan_is_the_last_weights(tmp_path):
    run_dir = tmp_path / "run"
    raw = select_config(tmp_path)
    raw["train"]["gan_select_max_artifact"] = 1e-12  # no output is that free of a grid pattern
    (member,) = train(make_context(raw, run_dir), resume=False)
    assert member.gan_pick is None and events(run_dir, "gan_pick") == []
    gan = load_tensors(run_dir / "member_0" / "gan.safetensors", "generator.")
    final = member.generator.state_dict()
    assert all((gan[k] == final[k]).all() for k in gan)


def test_colour_shift_guard_refuses_a_cast_candidate(tmp_path):
    """Validation scores each candidate's mean colour shift per RGB channel; a guard tighter than any real output's
    shift refuses them all (measured: without it a pick carried a +3.7-level blue cast)."""
    run_dir = tmp_path / "run"
    raw = select_config(tmp_path)
    raw["train"]["gan_select_max_shift"] = 1e-9
    (member,) = train(make_context(raw, run_dir), resume=False)
    vals = [e for e in events(run_dir, "val") if e["phase"] == "gan" and e["member"] == 0]
    shifts = [max(abs(v[k]) for k in ("shift_r", "shift_g", "shift_b")) for v in vals]
    assert len(shifts) >= 3 and min(shifts) > 1e-9  # a real, nonzero cast is measured on every candidate
    assert member.gan_pick is None and events(run_dir, "gan_pick") == []
    raw["train"]["gan_select_max_shift"] = max(shifts) + 1.0  # loose enough for all: a pick is made again
    (member,) = train(make_context(raw, tmp_path / "loose"), resume=False)
    assert member.gan_pick is not None


@pytest.mark.parametrize("overrides, words", [
    ({"gan_select": "alex"}, "'last', 'stlpips_alex'"),
    ({"gan_select_max_psnr_drop": -1.0}, "gan_select"),
    ({"gan_select_max_artifact": 0.0}, "gan_select"),
    ({"gan_select_max_shift": 0.0}, "colour shift"),
])
def test_bad_gan_select_settings(tmp_path, overrides, words):
    raw = select_config(tmp_path)
    raw["train"].update(overrides)
    with pytest.raises(ConfigError, match=words.replace("'", ".")):
        config_from_dict(raw)


def test_gan_select_needs_held_out_images(tmp_path):
    raw = select_config(tmp_path)
    raw["data"]["val_dir"] = ""
    with pytest.raises(ConfigError, match="held-out validation images"):
        config_from_dict(raw)
