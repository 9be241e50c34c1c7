"""Ensemble strategies on known member outputs, uncertainty, the alpha blend, and loading members from files."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgsrgan.infer import ensemble as ensemble_module
from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.infer.ensemble import (Ensemble, EnsembleSourceError, build_ensemble, consensus, median, psnr_weights,
                                    run_member_paths, shipped_member_paths)
from mgsrgan.errors import UserError
from mgsrgan.models.generator import Generator


class Constant(nn.Module):
    """A fake member: outputs a fixed (1, 3, H, W) image whatever the input; scale 2."""

    def __init__(self, image: torch.Tensor, radius: int = 3) -> None:
        super().__init__()
        self.image, self.scale, self.radius = image, 2, radius

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return self.image.expand(lr_img.shape[0], -1, -1, -1)

    def receptive_radius(self) -> int:
        return self.radius


def save_member(path: Path, generator: Generator, *, psnr: float | None = None, phase: str = "pretrain") -> Path:
    meta = {"arch": {"scale": generator.scale, "num_blocks": generator.num_blocks, "channels": generator.channels},
            "member": 0, "seed": 0, "phase": phase, "step": 1,
            "val": None if psnr is None else {"psnr": psnr, "ssim": 0.9}, "config": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)
    return path


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.clamp(0, 1) - b).square().mean()))


def test_mean_median_weighted_best_on_known_values():
    images = [torch.full((1, 3, 4, 4), v) for v in (0.1, 0.2, 0.6, 0.3)]
    members = [Constant(img) for img in images]
    x = torch.zeros(1, 3, 2, 2)
    assert torch.allclose(Ensemble(members, strategy="mean")(x), torch.full((1, 3, 4, 4), 0.3))
    assert torch.allclose(Ensemble(members, strategy="median")(x), torch.full((1, 3, 4, 4), 0.25))  # even K
    assert torch.allclose(Ensemble(members[:3], strategy="median")(x), torch.full((1, 3, 4, 4), 0.2))
    scores = [30.0, 33.0, 30.0, 20.0]
    w = torch.tensor([10 ** 3.0, 10 ** 3.3, 10 ** 3.0, 10 ** 2.0])
    expected = float((w / w.sum() * torch.tensor([0.1, 0.2, 0.6, 0.3])).sum())
    weighted = Ensemble(members, strategy="weighted", val_psnr=scores)(x)
    assert torch.allclose(weighted, torch.full((1, 3, 4, 4), expected))
    assert torch.allclose(Ensemble(members, strategy="best", val_psnr=scores)(x), images[1])
    assert torch.allclose(psnr_weights([10.0, 10.0]), torch.tensor([0.5, 0.5]))


def test_strategy_and_argument_errors():
    members = [Constant(torch.zeros(1, 3, 4, 4))]
    for kwargs in ({"strategy": "vote"}, {"strategy": "weighted"}, {"alpha": 0.5}, {"alpha": 1.5}):
        with pytest.raises(UserError):
            Ensemble(members, **kwargs)


def test_consensus_small_k_reduces_to_member_and_mean():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.allclose(consensus(a[None]), a)
    assert torch.allclose(consensus(torch.stack([a, b])), (a + b) / 2, atol=1e-6)
    assert torch.allclose(median(torch.stack([a, b, a])), a)


def test_consensus_measurement():
    """The numbers quoted in mgsrgan/infer/ensemble.py: 5 members = truth + N(0, 0.02), one of them bad in two ways."""
    gen = torch.Generator().manual_seed(0)
    truth = F.interpolate(torch.rand(1, 3, 12, 12, generator=gen), size=(96, 96), mode="bicubic",
                          align_corners=False).clamp(0, 1)
    results = {}
    for case in ("good", "noisy", "blotch"):
        stack = torch.stack([truth + 0.02 * torch.randn(truth.shape, generator=gen) for _ in range(5)])
        if case == "noisy":
            stack[4] = truth + 0.15 * torch.randn(truth.shape, generator=gen)
        if case == "blotch":
            stack[4, :, :, 20:52, 30:62] += 0.4
        results[case] = [psnr(combine(stack), truth) for combine in (lambda s: s.mean(0), median, consensus)]
    print({case: [round(v, 2) for v in values] for case, values in results.items()})
    mean_db, median_db, consensus_db = results["good"]
    assert consensus_db > mean_db - 0.2 and consensus_db > median_db + 1.0  # nothing wrong: as good as the mean
    for case in ("noisy", "blotch"):
        mean_db, median_db, consensus_db = results[case]
        assert consensus_db > mean_db + 5.0 and consensus_db > median_db + 1.0


def test_uncertainty_and_alpha_blend():
    images = [torch.rand(1, 3, 4, 4) for _ in range(3)]
    gan_image = torch.rand(1, 3, 4, 4)
    x = torch.zeros(2, 3, 2, 2)
    out, std = Ensemble([Constant(img) for img in images]).forward_with_uncertainty(x)
    stack = torch.stack(images)
    assert std.shape == (2, 1, 4, 4)
    assert torch.allclose(std[0, 0], stack.std(dim=0, correction=0).mean(dim=1)[0])
    assert torch.allclose(out[1], stack.mean(0)[0])
    _, single_std = Ensemble([Constant(images[0])]).forward_with_uncertainty(x)
    assert float(single_std.abs().max()) == 0.0
    for alpha in (0.0, 0.3, 1.0):
        blended = Ensemble([Constant(img) for img in images], gan_side=Constant(gan_image), alpha=alpha)(x)
        assert torch.allclose(blended[0], ((1 - alpha) * stack.mean(0) + alpha * gan_image)[0], atol=1e-6)


def test_receptive_radius_and_scale():
    generators = [Generator(scale=2, num_blocks=n, channels=8) for n in (1, 2)]
    ensemble = Ensemble(generators)
    assert ensemble.scale == 2 and ensemble.receptive_radius() == generators[1].receptive_radius()
    assert Ensemble(generators, strategy="consensus").receptive_radius() == generators[1].receptive_radius() + 2
    with pytest.raises(UserError, match="scales"):
        Ensemble([Generator(scale=2, num_blocks=1, channels=8), Generator(scale=4, num_blocks=1, channels=8)])


def test_build_ensemble_matches_members_and_reports_mismatches(tmp_path):
    torch.manual_seed(0)
    gens = [Generator(scale=2, num_blocks=1, channels=8).eval() for _ in range(2)]
    paths = [save_member(tmp_path / f"m{k}.safetensors", g, psnr=30.0 + k) for k, g in enumerate(gens)]
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        # loaded members have BatchNorm folded into their convs: equal up to float rounding
        assert torch.allclose(build_ensemble(paths)(x), (gens[0](x) + gens[1](x)) / 2, atol=1e-5)
        assert torch.allclose(build_ensemble(paths, strategy="best")(x), gens[1](x), atol=1e-5)
    other_scale = save_member(tmp_path / "x4.safetensors", Generator(scale=4, num_blocks=1, channels=8))
    other_width = save_member(tmp_path / "wide.safetensors", Generator(scale=2, num_blocks=1, channels=16))
    for odd in (other_scale, other_width):
        with pytest.raises(EnsembleSourceError) as info:
            build_ensemble([paths[0], odd])
        assert str(paths[0]) in str(info.value) and str(odd) in str(info.value)
    no_val = save_member(tmp_path / "noval.safetensors", gens[0])
    with pytest.raises(EnsembleSourceError, match="noval.safetensors.*validation PSNR"):
        build_ensemble([paths[0], no_val], strategy="weighted")


def test_run_member_paths(tmp_path, monkeypatch):
    generator = Generator(scale=2, num_blocks=1, channels=8)
    for k in (0, 2, 10):
        save_member(tmp_path / "run" / f"member_{k}" / "best.safetensors", generator)
    (tmp_path / "run" / "member_x").mkdir()
    found = run_member_paths(tmp_path / "run", "best")
    assert [p.parent.name for p in found] == ["member_0", "member_2", "member_10"]
    with pytest.raises(EnsembleSourceError, match="gan.safetensors: missing"):
        run_member_paths(tmp_path / "run", "gan")
    with pytest.raises(EnsembleSourceError, match="no such run folder"):
        run_member_paths(tmp_path / "nope", "best")
    with pytest.raises(EnsembleSourceError, match="no member_<k> folders"):
        run_member_paths(tmp_path, "best")
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv(ensemble_module.WEIGHTS_ENV, str(tmp_path / "weights"))
    with pytest.raises(EnsembleSourceError, match="--run RUN_DIR or --weights"):
        shipped_member_paths("pretrain")


def test_the_shipped_weights_are_found_where_mgsrgan_weights_points(tmp_path, monkeypatch):
    """An installed package finds the shipped ensembles through $MGSRGAN_WEIGHTS: a folder laid out as weights/."""
    generator = Generator(scale=2, num_blocks=1, channels=8)
    for k in (0, 1):
        save_member(tmp_path / "elsewhere" / "x2" / f"member_{k}" / "pretrain.safetensors", generator)
    monkeypatch.setenv("MGSRGAN_WEIGHTS", str(tmp_path / "elsewhere"))
    assert ensemble_module.shipped_root() == tmp_path / "elsewhere"
    members = tmp_path / "elsewhere" / "x2"
    assert shipped_member_paths("pretrain", 2) == [members / f"member_{k}" / "pretrain.safetensors" for k in (0, 1)]


def test_mgsrgan_weights_naming_a_missing_folder_is_one_line_naming_both(tmp_path, monkeypatch):
    monkeypatch.setenv("MGSRGAN_WEIGHTS", str(tmp_path / "gone"))
    with pytest.raises(EnsembleSourceError) as err:
        shipped_member_paths("pretrain")
    assert str(err.value).startswith(f"MGSRGAN_WEIGHTS={tmp_path / 'gone'}: no such folder")
    assert "\n" not in str(err.value)


def test_an_installed_package_without_mgsrgan_weights_says_how_to_point_at_them(tmp_path, monkeypatch):
    """Installed away from its checkout (site-packages holds no pyproject.toml; a stray site-packages/weights is not
    the shipped one), with no $MGSRGAN_WEIGHTS: one line naming the repository's weights/ and the variable."""
    assert ensemble_module.checkout_weights() == Path(__file__).resolve().parents[1] / "weights"  # this checkout's
    monkeypatch.delenv("MGSRGAN_WEIGHTS", raising=False)
    (tmp_path / "site-packages" / "weights").mkdir(parents=True)
    installed = tmp_path / "site-packages" / "mgsrgan" / "infer" / "ensemble.py"
    monkeypatch.setattr(ensemble_module, "__file__", str(installed))
    assert ensemble_module.checkout_weights() is None
    with pytest.raises(EnsembleSourceError) as err:
        shipped_member_paths("pretrain", 4)
    message = str(err.value)
    assert "repository's weights/ folder" in message and "MGSRGAN_WEIGHTS=/path/to/weights" in message
    assert "--run" in message and "\n" not in message


def test_consensus_of_agreeing_float16_members_is_finite():
    image = torch.rand(1, 3, 8, 8)
    stack = torch.stack([image, image, image]).half()  # zero deviation: weight 1 / VARIANCE_FLOOR, > fp16's max
    out = consensus(stack)
    assert torch.isfinite(out).all() and torch.allclose(out, image, atol=1e-3)


def test_perceptual_weights_follow_held_out_alex_scores():
    from mgsrgan.infer.ensemble import perceptual_weights

    weights = perceptual_weights([0.01, 0.02, 0.04])
    assert torch.allclose(weights, torch.tensor([4.0, 2.0, 1.0]) / 7.0)
    with pytest.raises(UserError, match="positive"):
        perceptual_weights([0.01, 0.0])


def test_score_members_writes_held_out_alex_and_perceptual_becomes_the_default(tmp_path):
    from mgsrgan.io.weightfiles import default_weight_path
    from mgsrgan.errors import STLPIPSError
    from mgsrgan.config import config_from_dict, dump_config
    from mgsrgan.io.checkpoint import read_meta
    from mgsrgan.infer.ensemble import build_ensemble
    from tools.score_members import main as score_main, score_members
    from tests.conftest import save_tiny_images, save_tiny_run

    try:
        default_weight_path("alex")
    except STLPIPSError:
        pytest.skip("stlpips-pytorch (ST-LPIPS-Alex weights) not installed")
    run = tmp_path / "run"
    save_tiny_run(run, checkpoint="gan")
    save_tiny_images(tmp_path / "images")
    raw = {"model": {"scale": 2, "num_blocks": 1, "channels": 8},
           "data": {"train_dirs": [str(tmp_path / "images")], "val_dir": "", "val_holdout": 2}}
    (run / "config.yaml").write_text(dump_config(config_from_dict(raw)))
    paths = run_member_paths(run, "gan")
    assert build_ensemble(paths).strategy == "mean"  # not scored yet
    expected = score_members(run, "gan", sorted((tmp_path / "images").iterdir())[-2:], progress=False)
    assert score_main([str(run), "--checkpoint", "gan"]) == 0
    scores = [read_meta(p)["val"]["stlpips_alex"] for p in paths]
    assert scores == pytest.approx(expected) and all(s > 0 for s in scores) and scores[0] != scores[1]
    assert read_meta(paths[0])["val"]["psnr"] == 24.0  # the other validation figures stay
    model = build_ensemble(paths)
    assert model.strategy == "perceptual"
    inverse = torch.tensor([1 / s for s in scores])
    assert torch.allclose(model.member_weights, (inverse / inverse.sum()).float())


def test_gan_members_from_another_phase_1_than_their_pixel_siblings_are_refused(tmp_path):
    """A GAN checkpoint records the phase-1 validation it started from; paired with a pretrain file whose own differs
    (e.g. phase 1 continued after phase 2), the texture mean and the blend refuse instead of reading the two
    generators' difference as texture. Matching records, or none, load."""
    from mgsrgan.io.checkpoint import CheckpointError, load_tensors, read_meta

    def member(k: int, pixel_psnr: float, started_from: float | None) -> tuple[Path, Path]:
        torch.manual_seed(k)
        folder = tmp_path / f"member_{k}"
        pixel = save_member(folder / "pretrain.safetensors", Generator(scale=2, num_blocks=1, channels=8),
                            psnr=pixel_psnr)
        gan = save_member(folder / "gan.safetensors", Generator(scale=2, num_blocks=1, channels=8), psnr=pixel_psnr,
                          phase="gan")
        meta = read_meta(gan)
        meta.update(history={} if started_from is None else {"pretrain": {"psnr": started_from, "ssim": 0.9}},
                    val={"psnr": 29.0, "ssim": 0.9, "stlpips_alex": 0.02 + k / 100})
        save_checkpoint(gan, load_tensors(gan), {k: v for k, v in meta.items() if k != "schema_version"})
        return pixel, gan

    pairs = [member(0, 29.71, 29.71), member(1, 29.70, None)]
    pixels, gans = [p for p, _ in pairs], [g for _, g in pairs]
    assert build_ensemble(gans).strategy == "texture"  # records agree (member 1 has none): loads
    assert build_ensemble(pixels, gan_paths=gans, alpha=1.0, adaptive_c0=0.8).alpha == 1.0
    pixel2, gan2 = member(2, 29.76, 29.71)  # phase 1 went on after this GAN member was trained from it
    for build in (lambda: build_ensemble([*gans, gan2]),
                  lambda: build_ensemble([*pixels, pixel2], gan_paths=[*gans, gan2], alpha=0.5)):
        with pytest.raises(CheckpointError, match=r"member_2/gan.safetensors was trained from another pixel-loss "
                                                  r"generator .* \(phase-1 validation 29.7100 dB, that file's 29.7600\)"):
            build()


def test_one_network_s_uncertainty_is_its_spread_over_the_eight_symmetries():
    from mgsrgan.infer.self_ensemble import SelfEnsemble, symmetry_outputs

    torch.manual_seed(0)
    generator = Generator(scale=2, num_blocks=1, channels=8).eval()
    x = torch.rand(2, 3, 6, 5)
    with torch.no_grad():
        out, std = Ensemble([generator], symmetry_map=True).forward_with_uncertainty(x)
        symmetries = torch.stack(list(symmetry_outputs(generator, x)))
        assert torch.equal(out, generator(x))  # the map costs 8 passes but leaves the output as it is
        assert torch.allclose(std, symmetries.std(0, correction=0).mean(1, keepdim=True), atol=1e-7)
        assert float(std.max()) > 1e-4
        out_x8, std_x8 = Ensemble([SelfEnsemble(generator)], symmetry_map=True).forward_with_uncertainty(x)
        assert torch.allclose(out_x8, SelfEnsemble(generator)(x), atol=1e-6) and torch.allclose(std_x8, std)
        assert float(Ensemble([generator]).forward_with_uncertainty(x)[1].abs().max()) == 0.0  # replayed outputs


def test_a_loaded_single_network_maps_its_symmetry_spread(tmp_path):
    from tests.conftest import save_tiny_run

    save_tiny_run(tmp_path / "run")
    model = build_ensemble([tmp_path / "run" / "member_0" / "best.safetensors"])
    with torch.no_grad():
        _, std = model.forward_with_uncertainty(torch.rand(1, 3, 8, 8))
    assert model.symmetry_map and float(std.max()) > 0.0


def test_copies_of_one_network_run_once_and_distinct_members_are_kept(tmp_path):
    import shutil

    from mgsrgan.infer.ensemble import one_if_identical
    from tests.conftest import save_tiny_run

    save_tiny_run(tmp_path / "run")
    first = tmp_path / "run" / "member_0" / "best.safetensors"
    copies = []
    for k in range(3):
        (tmp_path / "copies" / f"member_{k}").mkdir(parents=True)
        copies.append(shutil.copyfile(first, tmp_path / "copies" / f"member_{k}" / "best.safetensors"))
    assert one_if_identical(copies) == [copies[0]]
    distinct = [first, tmp_path / "run" / "member_1" / "best.safetensors"]
    assert one_if_identical(distinct) == distinct and one_if_identical([*distinct, copies[0]]) == [*distinct, copies[0]]
    model, single = build_ensemble(copies), build_ensemble([first])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert len(model.members) == 1 and torch.equal(model(x), single(x))
