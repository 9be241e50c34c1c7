"""End-to-end training behaviour on tiny generated data: steps, n:m counts, exact resume, seeds, learning."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import mgsrgan.train.loop as training
from mgsrgan.errors import UserError
from mgsrgan.io.checkpoint import load_generator, load_tensors, read_meta
from mgsrgan.config import config_from_dict
from mgsrgan.train.data import TrainPatches, load_validation
from mgsrgan.train.member import DONE, build_member, memory_format
from mgsrgan.train.loop import train
from tests.conftest import make_context, tiny_config, write_images


def final_weights(run_dir: Path, members: int) -> list[dict[str, torch.Tensor]]:
    """Networks and optimizer states of each member's last checkpoint. The recorded torch RNG state is left out:
    training draws no torch random numbers (patches come from index-seeded numpy generators)."""
    return [{k: v for k, v in load_tensors(run_dir / f"member_{k}" / "last.safetensors").items()
             if not k.startswith("rng.")} for k in range(members)]


def test_run_folder_holds_every_checkpoint_and_metadata(tmp_path):
    run_dir = tmp_path / "run"
    members = train(make_context(tiny_config(tmp_path), run_dir), resume=False)
    assert [m.phase for m in members] == [DONE, DONE]
    for k in range(2):
        names = sorted(p.name for p in (run_dir / f"member_{k}").glob("*.safetensors"))
        assert names == ["best.safetensors", "gan.safetensors", "last.safetensors", "pretrain.safetensors"]
        meta = read_meta(run_dir / f"member_{k}" / "gan.safetensors")
        assert meta["member"] == k and meta["seed"] == k and meta["arch"]["scale"] == 2
        assert meta["config"]["model"]["channels"] == 8  # the resolved config travels with every checkpoint
        assert set(meta["history"]) == {"pretrain", "gan"} and 0 < meta["history"]["pretrain"]["psnr"] < 99
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["event"] == "train"]
    assert len(train_events) == 2 * (2 + 2)  # 2 members x (2 pretrain + 2 gan) steps, logged every step
    # sequential: member 0's 2 pre-training steps, then its adversarial iterations, the discriminator's first (1:1)
    first_gan, second_gan = train_events[2], train_events[3]
    assert (first_gan["phase"], first_gan["step"], second_gan["step"]) == ("gan", 1, 2)
    assert {"loss_d", "d_real", "d_fake"} <= set(first_gan) and "adv" not in first_gan
    assert {"content", "adv"} <= set(second_gan) and "loss_d" not in second_gan


@pytest.mark.parametrize("g_updates,d_updates,iterations,expect_g,expect_d", [(2, 1, 2, 4, 2), (1, 3, 2, 2, 6)])
def test_n_to_m_makes_the_planned_optimizer_steps(tmp_path, g_updates, d_updates, iterations, expect_g, expect_d):
    raw = tiny_config(tmp_path, members=1, pretrain_steps=0, gan_iterations=iterations, g_updates=g_updates,
                      d_updates=d_updates, checkpoint_every=100)
    (member,) = train(make_context(raw, tmp_path / "run"), resume=False)
    g_param = next(member.generator.parameters())
    d_param = next(member.discriminator.parameters())
    assert int(member.optim_g.state[g_param]["step"]) == expect_g
    assert int(member.optim_d.state[d_param]["step"]) == expect_d


class Interrupt(Exception):
    pass


# the artifact-free recipe's moving parts: EMA (checkpointed), frozen BN, RaGAN, spectral norm, multi-layer loss
RECIPE = {"loss": {"adversarial": "relativistic", "content_layers": ["1_2", "2_2"], "content_layer_weights": [0.5, 1.0],
                   "pixel_weight_gan": 1.0},
          "train": {"ema_decay": 0.9, "gan_freeze_bn": True}, "model": {"d_spectral_norm": True}}


def with_recipe(raw: dict) -> dict:
    for section, values in RECIPE.items():
        raw[section].update(values)
    raw["loss"].pop("content_layer")
    return raw


@pytest.mark.parametrize("schedule", ["sequential", "lockstep"])
@pytest.mark.parametrize("stop_after", [1, 3])  # mid pre-training; mid adversarial phase
@pytest.mark.parametrize("recipe", [False, True])
def test_resume_is_bit_exact(tmp_path, monkeypatch, schedule, stop_after, recipe):
    raw = tiny_config(tmp_path, schedule=schedule)
    if recipe:
        raw = with_recipe(raw)
    straight = tmp_path / "straight"
    train(make_context(raw, straight), resume=False)

    calls = {"n": 0}
    real_pretrain, real_gan = training.pixel_step, training.gan_step

    def counting(real):
        def step(*args, **kwargs):
            if calls["n"] == stop_after:
                raise Interrupt  # a kill between steps; the last checkpoint is from step `stop_after`
            calls["n"] += 1
            return real(*args, **kwargs)
        return step

    monkeypatch.setattr(training, "pixel_step", counting(real_pretrain))
    monkeypatch.setattr(training, "gan_step", counting(real_gan))
    resumed = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        train(make_context(raw, resumed), resume=False)
    monkeypatch.setattr(training, "pixel_step", real_pretrain)
    monkeypatch.setattr(training, "gan_step", real_gan)
    train(make_context(raw, resumed), resume=True)

    for a, b in zip(final_weights(straight, 2), final_weights(resumed, 2)):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_members_differ_by_seed_and_repeat_with_it(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    cpu = torch.device("cpu")
    first, second, again = build_member(cfg, 0, cpu), build_member(cfg, 1, cpu), build_member(cfg, 0, cpu)
    w0, w1, w0b = (next(m.generator.parameters()) for m in (first, second, again))
    assert not torch.equal(w0, w1)
    assert torch.equal(w0, w0b)


def test_a_few_dozen_steps_lower_the_pixel_loss(tmp_path):
    raw = tiny_config(tmp_path, members=1, pretrain_steps=40, gan_iterations=0, checkpoint_every=100, log_every=1)
    raw["data"]["batch_size"] = 4
    run_dir = tmp_path / "run"
    train(make_context(raw, run_dir), resume=False)
    losses = [json.loads(line)["pixel"] for line in (run_dir / "log.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "train"]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])


def test_the_adversarial_phase_starts_a_fresh_generator_optimizer(tmp_path):
    raw = tiny_config(tmp_path, members=1, pretrain_steps=3, gan_iterations=1, checkpoint_every=100)
    (member,) = train(make_context(raw, tmp_path / "run"), resume=False)
    g_param = next(member.generator.parameters())
    assert int(member.optim_g.state[g_param]["step"]) == 1  # the 1 G update of 1:1 x 2; not 3 + 1


def test_independent_members_see_the_same_patches_in_lockstep_as_alone(tmp_path):
    """member_data=independent: member k's stream depends on its seed only, so lockstep == sequential, exactly;
    shared: a lockstep group trains on one stream, so its members end elsewhere."""
    runs = {}
    for schedule, data in (("sequential", "independent"), ("lockstep", "independent"), ("lockstep", "shared")):
        raw = with_recipe(tiny_config(tmp_path, schedule=schedule, member_data=data))
        runs[schedule, data] = tmp_path / f"{schedule}-{data}"
        train(make_context(raw, runs[schedule, data]), resume=False)

    def gan(run, k):
        return load_tensors(run / f"member_{k}" / "gan.safetensors")
    for k in range(2):
        alone, together = gan(runs["sequential", "independent"], k), gan(runs["lockstep", "independent"], k)
        assert all(torch.equal(alone[key], together[key]) for key in alone)
    shared = gan(runs["lockstep", "shared"], 1)
    alone = gan(runs["sequential", "independent"], 1)
    assert any(not torch.equal(shared[key], alone[key]) for key in alone)


def test_bootstrap_members_draw_from_their_own_resample(tmp_path):
    images = write_images(tmp_path / "many", count=12, size=20)
    base = TrainPatches(hr_dirs=[str(images)], scale=2, hr_patch=16, augment=True, seed=0)
    one, two, again = base.bootstrap(1), base.bootstrap(2), base.bootstrap(1)
    assert one.image_weights.sum() == 12 and (one.image_weights == 0).any()  # n draws with replacement
    assert np.array_equal(one.image_weights, again.image_weights)
    assert not np.array_equal(one.image_weights, two.image_weights)
    hit = {one.plan(n).image for n in range(400)}
    assert hit == set(np.flatnonzero(one.image_weights))  # every resampled image, never a left-out one
    assert np.array_equal(base.image_weights, np.ones(12))  # the original is untouched


def test_ema_is_what_the_gan_checkpoint_ships_and_frozen_bn_keeps_statistics(tmp_path):
    raw = with_recipe(tiny_config(tmp_path, members=1, gan_iterations=2))
    run_dir = tmp_path / "run"
    (member,) = train(make_context(raw, run_dir), resume=False)
    shipped = load_tensors(run_dir / "member_0" / "gan.safetensors", "generator.")
    for key, value in member.ema.state_dict().items():
        assert torch.equal(shipped[key], value), key
    raw_weights = member.generator.state_dict()
    assert any(not torch.equal(raw_weights[k], shipped[k]) for k in shipped if "weight" in k)  # EMA lags G
    pretrain = load_tensors(run_dir / "member_0" / "pretrain.safetensors", "generator.")
    stats = [k for k in pretrain if k.endswith("running_mean") or k.endswith("running_var")]
    assert stats and all(torch.equal(pretrain[k], raw_weights[k]) for k in stats)  # D batches moved nothing


def test_ema_update_is_the_moving_average():
    from mgsrgan.train.steps import update_ema
    ema, gen = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = ema.weight.detach().clone()
    update_ema(ema, gen, 0.75)
    torch.testing.assert_close(ema.weight, 0.75 * before + 0.25 * gen.weight.detach())


def test_held_out_images_validate_and_never_train(tmp_path):
    from mgsrgan.train.data import holdout_paths
    images = write_images(tmp_path / "imgs", count=5)
    held = holdout_paths([str(images)], 2)
    assert [p.name for p in held] == ["img3.png", "img4.png"]
    dataset = TrainPatches(hr_dirs=[str(images)], scale=2, hr_patch=16, augment=False, seed=0, exclude=held)
    assert [p.name for p, _ in dataset.sources] == ["img0.png", "img1.png", "img2.png"]
    assert [v.name for v in load_validation(str(images), 2, paths=held)] == ["img3", "img4"]
    with pytest.raises(Exception, match="all 5 images"):
        holdout_paths([str(images)], 5)
    raw = tiny_config(tmp_path)
    raw["data"]["val_holdout"] = 2
    with pytest.raises(Exception, match="val_holdout"):
        config_from_dict(raw)  # val_dir is set too


def test_pretrained_starts_phase_two_from_another_runs_generators(tmp_path):
    first = tmp_path / "first"
    train(make_context(tiny_config(tmp_path), first), resume=False)
    raw = with_recipe(tiny_config(tmp_path, gan_iterations=0))  # another discriminator and loss: a new phase 2
    second = tmp_path / "second"
    members = train(make_context(raw, second), resume=False, pretrained=first)
    assert [m.history["pretrain"] == read_meta(first / f"member_{m.index}" / "pretrain.safetensors")["val"]
            for m in members] == [True, True]
    for k in range(2):
        source = load_tensors(first / f"member_{k}" / "pretrain.safetensors", "generator.")
        for name in ("pretrain", "gan"):  # copied; and phase 2 of zero steps ships the generator unchanged
            got = load_tensors(second / f"member_{k}" / f"{name}.safetensors", "generator.")
            assert all(torch.equal(source[key], got[key]) for key in source), name
    raw["model"]["channels"] = 4
    with pytest.raises(Exception, match="not this config's"):
        train(make_context(raw, tmp_path / "third"), resume=False, pretrained=first)


def test_init_from_copies_an_x2_body_into_an_x4_member(tmp_path):
    """train.init_from: the head, blocks and body tail come from the x2 member; the x4 upsampler stays fresh."""
    raw = tiny_config(tmp_path, pretrain_steps=1, gan_iterations=0)
    x2_run = tmp_path / "runs" / "x2"
    train(make_context(raw, x2_run), resume=False)
    x2_generators = [load_generator(x2_run / f"member_{k}" / "pretrain.safetensors")[0] for k in range(2)]
    raw4 = tiny_config(tmp_path / "x4", init_from=str(x2_run))
    raw4["model"]["scale"] = 4
    raw4["data"]["hr_patch"] = 32
    ctx = make_context(raw4, tmp_path / "runs" / "x4")
    members = [build_member(ctx.cfg, k, ctx.device) for k in range(2)]
    for member in members:
        training.start_body_from(member, x2_run)
        own, source = member.generator.state_dict(), x2_generators[member.index].state_dict()
        assert torch.equal(own["body.0.conv1.weight"], source["body.0.conv1.weight"])
        assert torch.equal(own["head.0.weight"], source["head.0.weight"])
        assert torch.equal(own["body_tail.1.running_var"], source["body_tail.1.running_var"])
        assert own["upsample.1.conv.weight"].shape == (32, 8, 3, 3)  # the second x2 stage exists only at x4
    assert not torch.equal(members[0].generator.state_dict()["head.0.weight"],
                           members[1].generator.state_dict()["head.0.weight"])  # member k from member k
    wider = tiny_config(tmp_path / "wide", init_from=str(x2_run))
    wider["model"]["channels"] = 16
    ctx = make_context(wider, tmp_path / "runs" / "wide")
    with pytest.raises(UserError, match="bodies differ"):
        training.start_body_from(build_member(ctx.cfg, 0, ctx.device), x2_run)
    with pytest.raises(UserError, match="not found"):
        training.start_body_from(build_member(ctx.cfg, 0, ctx.device), tmp_path / "nowhere")


def test_init_from_at_the_same_scale_continues_the_whole_generator(tmp_path):
    """train.init_from at the source's scale: every tensor (upsampler and tail included) comes from member k, so
    phase 1 continues from the source's function (a warm restart), not from a half-fresh network."""
    raw = tiny_config(tmp_path, pretrain_steps=1, gan_iterations=0)
    source_run = tmp_path / "runs" / "first"
    train(make_context(raw, source_run), resume=False)
    again = tiny_config(tmp_path / "again", init_from=str(source_run), seed=7)
    ctx = make_context(again, tmp_path / "runs" / "again")
    x = torch.rand(1, 3, 12, 12)
    for k in range(2):
        member = build_member(ctx.cfg, k, ctx.device)
        source = load_generator(source_run / f"member_{k}" / "pretrain.safetensors")[0].eval()
        assert not torch.equal(member.generator.state_dict()["tail.weight"], source.state_dict()["tail.weight"])
        assert training.start_body_from(member, source_run) == "generator"
        own = member.generator.state_dict()
        assert all(torch.equal(own[name], tensor) for name, tensor in source.state_dict().items())
        with torch.no_grad():  # in the member's memory layout: the same convolution algorithms, the same bits
            assert torch.equal(member.generator.eval()(x), source.to(memory_format=memory_format(ctx.cfg))(x))


@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on CPU needs a C++ compiler")
def test_runtime_compile_trains_the_same_function(tmp_path):
    """runtime.compile: the gradient steps run a compiled module over the member's own parameters, to float
    rounding the eager steps; validation and checkpoints keep the plain generator."""
    from mgsrgan.train.steps import pixel_step

    raw = tiny_config(tmp_path, members=1)
    raw["runtime"]["amp"] = "none"
    weights = []
    for compiled in (False, True):
        raw["runtime"]["compile"] = compiled
        cfg = config_from_dict(raw)
        member = build_member(cfg, 0, torch.device("cpu"))
        assert (member.train_generator is not member.generator) == compiled
        batch = torch.Generator().manual_seed(3)
        for step in range(3):
            lr_img, hr_img = torch.rand(2, 3, 12, 12, generator=batch), torch.rand(2, 3, 24, 24, generator=batch)
            pixel_step(member, lr_img, hr_img, step, cfg, torch.device("cpu"))
        weights.append({k: v.clone() for k, v in member.generator.state_dict().items()})
    start = build_member(config_from_dict(raw), 0, torch.device("cpu")).generator.state_dict()
    moved = max((weights[0][k].float() - start[k].float()).abs().max() for k in start)
    assert moved > 1e-4  # the steps changed the weights, so agreement below means something
    # A conv bias before a BatchNorm has a zero gradient but for rounding, which Adam scales up to full steps in
    # either build; BatchNorm cancels it, and the running means follow it. Every other tensor must agree.
    before_bn = {f"{name}.bias" for name in ("body.0.conv1", "body.0.conv2", "body_tail.0")}
    free = [key for key in weights[0]
            if key not in before_bn and not key.endswith(("running_mean", "num_batches_tracked"))]
    assert len(free) > 10
    for key in free:
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=1e-4, atol=1e-5, msg=key)
