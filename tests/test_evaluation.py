import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan.io.degradation import bicubic_downscale, bicubic_upscale, modcrop
from mgsrgan.cli.evaluate import main
from mgsrgan.evaluate.protocol import (ARTIFACTS, evaluate_image, BICUBIC, EvaluationError, ImageScore, charge_shared_passes, default_strategies,
                                evaluate_folder, load_run_models, markdown_table, rgb_to_gray, summarize)
from mgsrgan.models.generator import Generator
from tests.conftest import SCALE, rgb_crop, save_tiny_images, save_tiny_run, scores_by_hand, sr_by_hand
from mgsrgan.evaluate.lpips import LPIPS, lpips_distance
from mgsrgan.evaluate.metrics import psnr, ssim
from mgsrgan.evaluate.stlpips import STLPIPSError, stlpips_distance
from mgsrgan.io.weightfiles import default_weight_path
from mgsrgan.models.trunks import BLOCK_WIDTHS, VGG16_BLOCKS, expected_shapes

try:
    STLPIPS_WEIGHTS = default_weight_path()
except STLPIPSError:
    STLPIPS_WEIGHTS = None


@pytest.fixture()
def setup(tmp_path):
    generators = save_tiny_run(tmp_path / "run")
    images = save_tiny_images(tmp_path / "Tiny")
    return tmp_path, generators, images


def test_cli_writes_tables_json_and_csv(setup, capsys):
    tmp, generators, images = setup
    out = tmp / "res.json"
    assert main(["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--out", str(out),
                 "--no-perceptual"]) == 0
    stdout = capsys.readouterr().out
    assert "LPIPS" not in stdout  # --no-perceptual: no ST-LPIPS / LPIPS column anywhere
    expected_rows = ["member_0", "member_1", "ensemble-mean", "ensemble-median", "ensemble-weighted",
                     "ensemble-best", "ensemble-consensus", BICUBIC]
    table_rows = [line.split("|")[1].strip() for line in stdout.splitlines() if line.startswith("| ")][2:]
    assert table_rows == expected_rows
    report = json.loads(out.read_text())
    models = report["sets"]["Tiny"]["models"]
    assert list(models) == expected_rows and all(m["images"] == 3 for m in models.values())
    assert not any("lpips" in key for m in models.values() for key in m)
    assert not any("lpips" in key for row in report["images"] for key in row)
    assert report["perceptual"] == {"stlpips_alex": "skipped: --no-perceptual", "stlpips": "skipped: --no-perceptual",
                                    "lpips": "skipped: --no-perceptual"}
    assert report["scale"] == SCALE and report["ensembles"]["ensemble-best"]["members"] == ["member_1"]
    for name, hr_img in images.items():  # every member and the mean ensemble, by hand
        for k, generator in enumerate(generators):
            row = next(r for r in report["images"] if r["image"] == name and r["model"] == f"member_{k}")
            assert (row["psnr"], row["ssim"]) == pytest.approx(scores_by_hand(generator, hr_img), abs=1e-9)
        mean = next(r for r in report["images"] if r["image"] == name and r["model"] == "ensemble-mean")
        expected = scores_by_hand(lambda x: (generators[0](x) + generators[1](x)) / 2, hr_img)
        assert (mean["psnr"], mean["ssim"]) == pytest.approx(expected, abs=1e-6)
        best = next(r for r in report["images"] if r["image"] == name and r["model"] == "ensemble-best")
        member_1 = next(r for r in report["images"] if r["image"] == name and r["model"] == "member_1")
        assert best["psnr"] == member_1["psnr"]
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(expected_rows) and rows[0]["dataset"] == "Tiny"
    assert list(rows[0]) == ["dataset", "image", "model", "psnr", "ssim", "seconds", "artifact", "artifact_hr",
                             "shift_r", "shift_g", "shift_b"]
    for row in report["images"]:  # the artifact columns are the artifacts.py functions on the written images
        assert row["artifact"] >= 0 and row["artifact_hr"] >= 0 and abs(row["shift_r"]) < 255


def test_artifact_columns_see_a_checkerboard_and_a_cast():
    yy, xx = np.mgrid[0:32, 0:32]
    hr = np.full((32, 32, 3), 120, np.uint8)
    board = (hr.astype(int) + 6 * ((yy + xx) % 2 * 2 - 1)[..., None]).astype(np.uint8)
    cast = hr.copy()
    cast[..., 2] += 4
    scores = evaluate_image(hr, {"board": lambda lr: board, "cast": lambda lr: cast}, scale=SCALE)
    assert scores["board"]["artifact"] > 4 and scores["board"]["artifact_hr"] == 0.0
    assert scores["cast"]["artifact"] == 0.0
    assert (scores["cast"]["shift_r"], scores["cast"]["shift_b"]) == (0.0, 4.0)
    table = markdown_table("T", summarize([ImageScore("T", "i", m, 1.0, 1.0, 0.0, **{k: v for k, v in s.items()
                                                                                      if k in ARTIFACTS})
                                           for m, s in scores.items()])["T"], scale=SCALE)
    assert "| cast | 1.00 | 1.0000 | n/a | 0.000 (0.000) | +0.00 / +0.00 / +4.00 |" in table


@pytest.mark.skipif(STLPIPS_WEIGHTS is None, reason="ST-LPIPS weights not installed (pip install stlpips-pytorch)")
def test_stlpips_column_equals_direct_distance(setup, capsys, monkeypatch):
    tmp, generators, images = setup
    monkeypatch.setenv("TORCH_HOME", str(tmp / "empty_hub"))  # no LPIPS backbone: that column is skipped, with a note
    out = tmp / "res.json"
    assert main(["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--out", str(out),
                 "--strategies", "mean"]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "LPIPS skipped" in notes[0] and "vgg16-397923af.pth" in notes[0]
    assert ("| model | PSNR (dB) | SSIM | ST-LPIPS-Alex | ST-LPIPS | vs bicubic (dB) | artifact (HR) | "
            "shift R / G / B | s / image |") in captured.out
    report = json.loads(out.read_text())
    assert report["perceptual"]["stlpips_alex"].endswith("alex_shift_tolerant.pth")
    assert report["perceptual"]["stlpips"].endswith("vgg_shift_tolerant.pth")
    assert report["perceptual"]["stlpips_alex"].startswith("on: ")
    assert report["perceptual"]["stlpips"].startswith("on: ")
    assert report["perceptual"]["lpips"].startswith("skipped: ")
    from mgsrgan.evaluate.stlpips import STLPIPS
    model, alex = STLPIPS(), STLPIPS(net="alex")
    direct = {"member_0": generators[0], "ensemble-mean": lambda x: (generators[0](x) + generators[1](x)) / 2}
    for name in ("a", "g"):  # an RGB and a gray image
        rows = {r["model"]: r for r in report["images"] if r["image"] == name}
        assert "lpips" not in rows[BICUBIC]
        for row_name, upscale in direct.items():
            sr_img, hr_img = sr_by_hand(upscale, images[name])
            expected = stlpips_distance(rgb_crop(sr_img), rgb_crop(hr_img), model=model)
            assert rows[row_name]["stlpips"] == pytest.approx(expected, abs=1e-6)
            expected_alex = stlpips_distance(rgb_crop(sr_img), rgb_crop(hr_img), model=alex)
            assert rows[row_name]["stlpips_alex"] == pytest.approx(expected_alex, abs=1e-6)
            assert rows[row_name]["stlpips_alex"] > 0.0 and rows[row_name]["stlpips_alex"] != rows[row_name]["stlpips"]
        hr_img = modcrop(images[name], SCALE)
        sr_img = bicubic_upscale(bicubic_downscale(hr_img, SCALE), SCALE)
        assert rows[BICUBIC]["stlpips"] == pytest.approx(
            stlpips_distance(rgb_crop(sr_img), rgb_crop(hr_img), model=model), abs=1e-6)
        assert rows[BICUBIC]["stlpips_alex"] == pytest.approx(
            stlpips_distance(rgb_crop(sr_img), rgb_crop(hr_img), model=alex), abs=1e-6)
    mean_row = report["sets"]["Tiny"]["models"][BICUBIC]
    for key in ("stlpips", "stlpips_alex"):
        assert mean_row[key] == pytest.approx(np.mean([r[key] for r in report["images"] if r["model"] == BICUBIC]))
    with open(out.with_suffix(".csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-2:] == ["stlpips_alex", "stlpips"] and float(rows[0]["stlpips_alex"]) >= 0.0


def test_stlpips_alex_weights_flag(setup, capsys):
    """A given --stlpips-alex-weights that is absent is an error (not a skip), and --no-perceptual refuses it."""
    tmp, _, _ = setup
    base = ["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--out", str(tmp / "r.json"),
            "--strategies", "mean", "--stlpips-alex-weights", str(tmp / "absent.pth")]
    assert main(base + ["--no-perceptual"]) == 2
    assert "--no-perceptual contradicts --stlpips-alex-weights" in capsys.readouterr().err
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "absent.pth" in err and "not found" in err


def test_lpips_column_with_given_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    backbone = {f"features.{key}": torch.randn(shape, generator=generator) * (0.05 if len(shape) == 4 else 0.01)
                for key, shape in expected_shapes(VGG16_BLOCKS, anti_aliased=False).items()}
    torch.save(backbone, tmp_path / "vgg16.pth")
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1, generator=generator)
                for k, w in enumerate(BLOCK_WIDTHS)}, tmp_path / "heads.pth")
    model = LPIPS(backbone=str(tmp_path / "vgg16.pth"), heads=str(tmp_path / "heads.pth"))
    images = save_tiny_images(tmp_path / "Tiny")
    perceptual = {"lpips": lambda sr_img, hr_img: lpips_distance(sr_img, hr_img, model=model)}
    results = evaluate_folder(tmp_path / "Tiny", {BICUBIC: lambda lr: bicubic_upscale(lr, SCALE)}, scale=SCALE,
                              perceptual=perceptual)
    for r in results:
        hr_img = modcrop(images[r.image], SCALE)
        sr_img = bicubic_upscale(bicubic_downscale(hr_img, SCALE), SCALE)
        assert r.lpips == pytest.approx(lpips_distance(rgb_crop(sr_img), rgb_crop(hr_img), model=model), abs=1e-7)
        assert r.lpips > 0.0 and r.stlpips is None
    summary = summarize(results)["Tiny"]
    assert "lpips" in summary[BICUBIC] and "stlpips" not in summary[BICUBIC]
    assert "| model | PSNR (dB) | SSIM | LPIPS | vs bicubic" in markdown_table("Tiny", summary, scale=SCALE)
    too_small = {"lpips": lambda sr_img, hr_img: lpips_distance(sr_img[:8], hr_img[:8], model=model)}
    with pytest.raises(EvaluationError, match=r"a\.png: LPIPS needs images of at least"):
        evaluate_folder(tmp_path / "Tiny", {BICUBIC: lambda lr: bicubic_upscale(lr, SCALE)}, scale=SCALE,
                        perceptual=too_small)


def test_bicubic_row_equals_direct_metrics(setup):
    tmp, _, images = setup
    results = evaluate_folder(tmp / "Tiny", {BICUBIC: lambda lr: bicubic_upscale(lr, SCALE)}, scale=SCALE)
    assert [r.image for r in results] == ["a", "b", "g"]
    for r in results:
        hr_img = modcrop(images[r.image], SCALE)
        sr_img = bicubic_upscale(bicubic_downscale(hr_img, SCALE), SCALE)
        assert r.psnr == psnr(sr_img, hr_img, crop_border=SCALE)
        assert r.ssim == ssim(sr_img, hr_img, crop_border=SCALE)
    row = summarize(results)["Tiny"][BICUBIC]
    assert row["psnr"] == pytest.approx(np.mean([r.psnr for r in results]))
    assert "| bicubic |" in markdown_table("Tiny", summarize(results)["Tiny"], scale=SCALE)


def test_member_passes_are_shared(setup, monkeypatch):
    tmp, _, _ = setup
    models = load_run_models(tmp / "run", checkpoint="best", strategies=["mean", "median"], device="cpu")
    calls = []
    original = Generator.forward
    monkeypatch.setattr(Generator, "forward", lambda self, x: calls.append(1) or original(self, x))
    results = evaluate_folder(tmp / "Tiny", models.upscalers, scale=SCALE)
    assert len(results) == 4 * 3
    assert len(calls) == 2 * 3  # two members, three images: one pass each, reused by 2 member + 2 ensemble rows


def test_tiled_members_score_like_untiled(setup):
    tmp, _, images = setup
    (tmp / "One").mkdir()
    Image.fromarray(images["a"]).save(tmp / "One" / "a.png")  # one image: every tile shape costs a kernel setup
    whole, tiled = (load_run_models(tmp / "run", checkpoint="best", strategies=["mean"], device="cpu", tile=tile)
                    for tile in (0, 8))
    for a, b in zip(evaluate_folder(tmp / "One", whole.upscalers, scale=SCALE),
                    evaluate_folder(tmp / "One", tiled.upscalers, scale=SCALE)):
        assert (a.model, a.image) == (b.model, b.image)
        assert a.psnr == pytest.approx(b.psnr, abs=1e-3)  # equal up to float summation order before rounding


def test_charge_shared_passes_adds_member_seconds():
    results = [ImageScore("S", "x", "member_0", 30.0, 0.9, 1.0), ImageScore("S", "x", "member_1", 30.0, 0.9, 2.0),
               ImageScore("S", "x", "ensemble-mean", 31.0, 0.9, 0.25),
               ImageScore("S", "x", "ensemble-best", 30.0, 0.9, 0.0)]
    charged = charge_shared_passes(results, {"ensemble-mean": ["member_0", "member_1"],
                                             "ensemble-best": ["member_1"]})
    assert [r.seconds for r in charged] == [1.0, 2.0, 3.25, 2.0]


def test_strategies_without_validation_scores(tmp_path, capsys):
    save_tiny_run(tmp_path / "run", val=False)
    save_tiny_images(tmp_path / "Tiny")
    assert default_strategies([{"val": None}, {"val": {"psnr": 1.0}}]) == ["mean", "median", "consensus"]
    models = load_run_models(tmp_path / "run", checkpoint="best", strategies=None, device="cpu")
    assert list(models.upscalers) == ["member_0", "member_1", "ensemble-mean", "ensemble-median",
                                      "ensemble-consensus"]
    code = main(["--run", str(tmp_path / "run"), "--data", str(tmp_path / "Tiny"), "--strategies", "weighted",
                 "--device", "cpu"])
    assert code == 2 and "no validation PSNR" in capsys.readouterr().err


def test_gray_output_uses_pillow_luma():
    rgb = np.array([[[10, 10, 10], [255, 0, 0], [0, 255, 0]]], np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(rgb), [[10, 76, 150]])


@pytest.mark.parametrize("problem", ["missing_data", "empty_data", "no_members", "no_checkpoint", "missing_run"])
def test_user_errors_are_one_line(tmp_path, capsys, problem):
    run, data = tmp_path / "run", tmp_path / "Tiny"
    if problem != "missing_run":
        run.mkdir()
    if problem not in ("no_members", "missing_run"):
        save_tiny_run(run, checkpoint="last")
    if problem == "empty_data":
        data.mkdir()
    elif problem != "missing_data":
        save_tiny_images(data)
    checkpoint = "best" if problem == "no_checkpoint" else "last"
    code = main(["--run", str(run), "--data", str(data), "--checkpoint", checkpoint, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert {"missing_data": "no such data folder", "empty_data": "no images", "no_members": "no member_<k>",
            "no_checkpoint": "best.safetensors: missing", "missing_run": "no such run folder"}[problem] in err


def test_precision_default_fp32_and_errors(setup, capsys):
    tmp, _, _ = setup
    out = tmp / "res.json"
    base = ["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--no-perceptual",
            "--strategies", "mean"]
    assert main(base + ["--out", str(out)]) == 0
    assert json.loads(out.read_text())["precision"] == "float32"  # scores do not depend on the machine's bf16
    capsys.readouterr()
    assert main(base + ["--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --precision fp16: float16 is for CUDA only") and "\n" not in err
    with pytest.raises(SystemExit) as exc:  # argparse: not one of the choices
        main(base + ["--precision", "half"])
    assert exc.value.code == 2 and "--precision: invalid choice: 'half'" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cpu._is_avx512_bf16_supported() and not torch.cpu._is_amx_tile_supported(),
                    reason="this CPU lacks native bf16 (no AVX512-BF16 or AMX)")
def test_bf16_rows_score_close_to_fp32(setup, capsys):
    """--precision bf16: the generator passes run in bf16, strategies and scoring in fp32; scores stay within a
    small margin of fp32 (measured on these tiny generators: under 0.01 dB) and the report says which ran."""
    tmp, generators, images = setup
    reports = {}
    for precision in ("fp32", "bf16"):
        out = tmp / f"{precision}.json"
        assert main(["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--out", str(out),
                     "--no-perceptual", "--strategies", "mean", "median", "--precision", precision]) == 0
        reports[precision] = json.loads(out.read_text())
    assert reports["bf16"]["precision"] == "bfloat16"
    rows = {p: {(r["image"], r["model"]): r["psnr"] for r in reports[p]["images"]} for p in reports}
    assert rows["fp32"].keys() == rows["bf16"].keys()
    gaps = [abs(rows["bf16"][key] - rows["fp32"][key]) for key in rows["fp32"]]
    assert max(gaps) < 0.05
    # member rows: the generator alone (BatchNorm folded, as loaded) under bf16 autocast, by hand
    import copy

    from mgsrgan.models.fuse import fold_batchnorm
    from mgsrgan.infer.upscaler import ReducedPrecision

    models = load_run_models(tmp / "run", checkpoint="best", strategies=["mean"], device="cpu",
                             precision=torch.bfloat16)
    folded = ReducedPrecision(fold_batchnorm(copy.deepcopy(generators[1])), torch.bfloat16)
    for name, hr_img in images.items():
        expected = scores_by_hand(folded, hr_img)[0]
        assert rows["bf16"][(name, "member_1")] == pytest.approx(expected, abs=1e-6)
    assert [r.psnr for r in evaluate_folder(tmp / "Tiny", models.upscalers, scale=SCALE)
            if r.model == "member_1"] == pytest.approx([rows["bf16"][(n, "member_1")] for n in ("a", "b", "g")])


def test_shipped_ensemble_by_scale_writes_outside_weights(tmp_path, monkeypatch, capsys):
    """No --run: the shipped weights/x<scale> ensemble; its report goes to runs/shipped-x<scale>/, not weights/."""
    from mgsrgan.infer import ensemble as ensemble_module

    monkeypatch.setenv(ensemble_module.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.chdir(tmp_path)
    save_tiny_run(tmp_path / "weights" / "x2", checkpoint="pretrain")
    save_tiny_images(tmp_path / "Tiny")
    assert main(["--data", str(tmp_path / "Tiny"), "--checkpoint", "pretrain", "--no-perceptual"]) == 0
    assert (tmp_path / "runs" / "shipped-x2" / "eval_pretrain.json").is_file()
    assert sorted(p.name for p in (tmp_path / "weights" / "x2").iterdir()) == ["member_0", "member_1"]
    assert main(["--data", str(tmp_path / "Tiny"), "--checkpoint", "pretrain", "--scale", "4"]) == 2
    assert "weights/x4" in capsys.readouterr().err
    capsys.readouterr()
    real = ["--data", str(tmp_path / "Tiny"), "--checkpoint", "pretrain", "--no-perceptual", "--real"]
    assert main(real) == 2  # none shipped yet: a sentence naming the folder, not a traceback
    assert "no real-photo model for x2 is shipped yet" in capsys.readouterr().err
    save_tiny_run(tmp_path / "weights" / "x2-real", checkpoint="pretrain", seed=5)
    assert main(real) == 0
    clean = json.loads((tmp_path / "runs" / "shipped-x2" / "eval_pretrain.json").read_text())
    report = json.loads((tmp_path / "runs" / "shipped-x2-real" / "eval_pretrain.json").read_text())
    assert report["run"].endswith("x2-real")
    assert report["images"][0]["psnr"] != clean["images"][0]["psnr"]  # the other model's numbers
    assert main([*real, "--run", str(tmp_path / "weights" / "x2")]) == 2


def test_degrade_scores_every_model_on_the_same_degraded_lr(setup, capsys):
    """--degrade noise:8,jpeg:40: the bicubic row equals bicubic of protocol_lr's degraded LR (seed = image index)
    and falls below the clean run's, every row changes, and the JSON says what was applied."""
    from mgsrgan.evaluate.protocol import load_hr, protocol_lr
    from mgsrgan.io.degradation import bicubic_upscale, modcrop
    from mgsrgan.io.photo_degradation import parse_spec

    tmp, _generators, images = setup
    clean, noisy = tmp / "clean.json", tmp / "noisy.json"
    common = ["--run", str(tmp / "run"), "--data", str(tmp / "Tiny"), "--device", "cpu", "--no-perceptual"]
    assert main([*common, "--out", str(clean)]) == 0
    assert main([*common, "--out", str(noisy), "--degrade", "noise:8,jpeg:40"]) == 0
    assert "LR degraded after the bicubic downscale: noise:8,jpeg:40" in capsys.readouterr().out
    report, plain = json.loads(noisy.read_text()), json.loads(clean.read_text())
    assert report["degrade"] == "noise:8,jpeg:40" and plain["degrade"] == ""
    noisy_models, clean_models = report["sets"]["Tiny"]["models"], plain["sets"]["Tiny"]["models"]
    assert noisy_models[BICUBIC]["psnr"] < clean_models[BICUBIC]["psnr"] - 0.5
    assert all(noisy_models[m]["psnr"] != clean_models[m]["psnr"] for m in clean_models)  # every row saw it
    paths = sorted((tmp / "Tiny").iterdir())
    for index, path in enumerate(paths):
        hr_img = modcrop(load_hr(path), SCALE)
        lr_img = protocol_lr(hr_img, SCALE, parse_spec("noise:8,jpeg:40"), seed=index)
        assert lr_img.shape[:2] == (hr_img.shape[0] // SCALE, hr_img.shape[1] // SCALE)
        row = next(r for r in report["images"] if r["image"] == path.stem and r["model"] == BICUBIC)
        assert row["psnr"] == pytest.approx(psnr(bicubic_upscale(lr_img, SCALE), hr_img, crop_border=SCALE))
    assert main([*common, "--out", str(noisy), "--degrade", "sharpen:3"]) == 2
    assert "--degrade 'sharpen:3'" in capsys.readouterr().err


def test_protocol_lr_keeps_gray_gray_and_is_seeded():
    from mgsrgan.evaluate.protocol import protocol_lr
    from mgsrgan.io.photo_degradation import parse_spec

    gray = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    steps = parse_spec("noise:5,jpeg:60")
    lr = protocol_lr(gray, 2, steps, seed=3)
    assert lr.shape == (32, 32) and lr.dtype == np.uint8
    assert np.array_equal(lr, protocol_lr(gray, 2, steps, seed=3))
    assert not np.array_equal(lr, protocol_lr(gray, 2, steps, seed=4))
    assert np.array_equal(protocol_lr(gray, 2), protocol_lr(gray, 2, (), seed=9))  # no steps: the plain protocol


def test_copies_of_one_network_are_scored_once(tmp_path):
    """A campaign GAN stage ships its one SRResNet as every member's pretrain file: one row, no ensemble rows."""
    import shutil

    save_tiny_run(tmp_path / "run", checkpoint="pretrain")
    shutil.copyfile(tmp_path / "run" / "member_0" / "pretrain.safetensors",
                    tmp_path / "run" / "member_1" / "pretrain.safetensors")
    models = load_run_models(tmp_path / "run", checkpoint="pretrain", strategies=None, device="cpu")
    assert sorted(models.upscalers) == ["member_0"] and models.uses == {}
    distinct = tmp_path / "distinct"
    save_tiny_run(distinct, checkpoint="pretrain")
    assert "member_1" in load_run_models(distinct, checkpoint="pretrain", strategies=None, device="cpu").upscalers
