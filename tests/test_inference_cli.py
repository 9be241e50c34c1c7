"""inference.py end to end: names and layout, formats, skip/overwrite, batching, bad inputs, exit codes."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mgsrgan import Upscaler
from mgsrgan.infer import ensemble as ensemble_module
from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.errors import UserError
from mgsrgan.device import cpu_has_bf16
from mgsrgan.models.generator import Generator
from mgsrgan.cli.infer import main
from mgsrgan.evaluate.metrics import tensor_to_uint8
from mgsrgan.infer.self_ensemble import SelfEnsemble

ROOT = Path(__file__).resolve().parents[1]


def save_member(path: Path, scale: int = 2, channels: int = 8, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    generator = Generator(scale=scale, num_blocks=1, channels=channels)
    meta = {"arch": {"scale": scale, "num_blocks": 1, "channels": channels}, "member": 0, "seed": seed,
            "phase": "pretrain", "step": 1, "val": {"psnr": 30.0, "ssim": 0.9}, "config": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {f"generator.{k}": v for k, v in generator.state_dict().items()}, meta)
    return path


@pytest.fixture()
def weights(tmp_path) -> list[str]:
    return [str(save_member(tmp_path / "w" / f"m{k}.safetensors", seed=k)) for k in range(2)]


def rgb(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_folder_end_to_end_with_bad_files(tmp_path, weights, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    rgb(6, 5).save(src / "a.png")
    rgb(6, 5, seed=1).save(src / "sub" / "b.jpg")
    rgb(4, 4).convert("L").save(src / "gray.png")
    (src / "bad.png").write_text("garbage")
    (src / "empty.png").write_bytes(b"")
    rgb(30, 30).save(src / "big.png")
    (src / "notes.txt").write_text("not an image suffix: ignored")
    code, stdout, stderr = run(capsys, "-i", src, "-o", out, "--weights", *weights, "--recursive", "--max-pixels",
                               500, "--uncertainty")
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in stderr
    for name in ("bad.png", "empty.png", "big.png"):
        assert sum(str(src / name) in line for line in errors) == 1
    assert "3 written, 0 skipped, 3 failed" in stdout and "images/s" in stdout and "Mpx/s" in stdout
    assert Image.open(out / "a.png").size == (10, 12)
    assert Image.open(out / "sub" / "b.jpg").format == "JPEG"
    assert Image.open(out / "gray.png").mode == "L"
    assert Image.open(out / "a_uncertainty.png").size == (10, 12)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "a_uncertainty.png", "gray.png", "gray_uncertainty.png", "sub/b.jpg",
                       "sub/b_uncertainty.png"]  # nothing for failures, no temp files
    code, stdout, stderr = run(capsys, "-i", src / "a.png", "-o", out, "--weights", *weights)
    assert code == 0 and "0 written, 1 skipped, 0 failed" in stdout
    assert f"1 skipped: the output already exists in {out} (pass --overwrite" in stderr  # the reason, not silence
    before = (out / "a.png").stat().st_mtime_ns
    code, stdout, _ = run(capsys, "-i", src / "a.png", "-o", out, "--weights", *weights, "--overwrite")
    assert code == 0 and "1 written" in stdout and (out / "a.png").stat().st_mtime_ns >= before


def test_output_matches_api_and_batching_is_invisible(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        rgb(7, 9, seed=k).save(src / f"img{k}.png")
    rgb(5, 5).save(src / "other.png")
    for batch in (1, 2):
        code, stdout, _ = run(capsys, "-i", src, "-o", tmp_path / f"b{batch}", "--weights", *weights,
                              "--batch-size", batch)
        assert code == 0 and "4 written" in stdout
    for name in ("img0.png", "img1.png", "img2.png", "other.png"):
        one, two = (np.asarray(Image.open(tmp_path / folder / name)) for folder in ("b1", "b2"))
        assert np.array_equal(one, two)
    expected = Upscaler.from_weights(weights)(Image.open(src / "img1.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b1" / "img1.png")), np.asarray(expected))
    code, _, _ = run(capsys, "-i", src / "img0.png", "-o", tmp_path / "j", "--weights", *weights, "--ext", "jpg",
                     "--tile", 4)
    assert code == 0 and Image.open(tmp_path / "j" / "img0.jpg").format == "JPEG"


def test_an_output_folder_that_is_a_file_stops_before_any_upscale(tmp_path, weights, capsys):
    rgb(4, 4).save(tmp_path / "a.png")
    rgb(4, 4).save(tmp_path / "b.png")
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    code, stdout, stderr = run(capsys, "-i", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "blocker",
                               "--weights", *weights)
    assert code == 2 and "written" not in stdout  # refused up front: nothing upscaled, then failed one by one
    assert stderr.strip().splitlines() == [f"error: --output_dir {tmp_path / 'blocker'}: {tmp_path / 'blocker'} is a "
                                           "file, not a folder"]


def test_usage_and_config_errors_exit_2(tmp_path, weights, capsys, monkeypatch):
    rgb(4, 4).save(tmp_path / "a.png")
    odd = save_member(tmp_path / "x4.safetensors", scale=4)
    (tmp_path / "no_weights").mkdir()
    monkeypatch.setenv(ensemble_module.WEIGHTS_ENV, str(tmp_path / "no_weights"))
    cases = [
        (["--weights", weights[0], str(odd)], [weights[0], str(odd)]),  # mismatched members: both files named
        (["--run", str(tmp_path / "nope")], ["no such run folder"]),
        ([], ["--run RUN_DIR or --weights"]),  # no shipped weights yet
        (["--weights", *weights, "--half", "--device", "cpu"], ["--half"]),
        (["--weights", *weights, "--alpha", "2"], ["--alpha"]),
        (["--weights", *weights, "--guided", "0.5"], ["--guided needs --alpha"]),
        (["--weights", *weights, "--alpha", "1", "--gan-member", *weights, "--guided", "0.5", "--adaptive", "0.8"],
         ["not both"]),
        (["--weights", *weights, "--alpha", "1", "--gan-member", *weights, "--adaptive", "4"], ["(0, 1]"]),
        (["--weights", *weights, "--ext", "xyz"], ["xyz"]),
    ]
    for extra, messages in cases:
        code, _, stderr = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", *extra)
        assert code == 2 and all(m in stderr for m in messages) and "Traceback" not in stderr, extra
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: ")
    code, _, stderr = run(capsys, "-o", tmp_path / "out")  # argparse: missing -i
    assert code == 2 and "--input" in stderr
    code, _, stderr = run(capsys, "-i", tmp_path / "missing", "-o", tmp_path / "out", "--weights", *weights)
    assert code == 2 and "missing: no such file or folder" in stderr
    code, _, stderr = run(capsys, "-i", tmp_path, "-o", tmp_path, "--weights", *weights, "--overwrite")
    assert code == 2 and "would replace the input" in stderr
    assert not (tmp_path / "out").exists()


def test_root_script_help():
    result = subprocess.run([sys.executable, "inference.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--strategy" in result.stdout and "--tile-pad" in result.stdout


def test_out_of_memory_is_a_per_file_failure_and_output_inside_input_is_not_input(tmp_path, weights, capsys,
                                                                                  monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    rgb(4, 4).save(src / "a.png")
    code, stdout, _ = run(capsys, "-i", src, "-o", src / "out", "--weights", *weights, "--recursive")
    assert code == 0 and "1 written" in stdout
    code, stdout, _ = run(capsys, "-i", src, "-o", src / "out", "--weights", *weights, "--recursive")
    assert code == 0 and "0 written, 1 skipped, 0 failed" in stdout  # out/a.png was not taken as an input

    def no_memory(self, lr_img):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(Upscaler, "upscale_tensor", no_memory)
    code, stdout, stderr = run(capsys, "-i", src / "a.png", "-o", tmp_path / "o2", "--weights", *weights)
    assert code == 1 and "0 written, 0 skipped, 1 failed" in stdout
    assert stderr.startswith(f"error: {src / 'a.png'}: out of memory; pass --tile") and "Traceback" not in stderr


def test_self_ensemble_flag_runs_the_eight_symmetries(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rgb(8, 6, seed=4).save(src / "a.png")
    code, stdout, _ = run(capsys, "-i", src, "-o", tmp_path / "x8", "--weights", *weights, "--self-ensemble")
    assert code == 0 and "1 written" in stdout
    members = [SelfEnsemble(Upscaler.from_weights([w]).model.members[0]) for w in weights]
    lr_img = torch.from_numpy(np.array(Image.open(src / "a.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = tensor_to_uint8(sum(m(lr_img) for m in members) / len(members))
    got = np.asarray(Image.open(tmp_path / "x8" / "a.png"))
    plain = np.asarray(Upscaler.from_weights(weights)(Image.open(src / "a.png")))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # float-order rounding at .5 only
    assert np.abs(got.astype(int) - plain.astype(int)).max() > 1  # and it is not the plain ensemble


def test_precision_flag_errors_exit_2_in_one_line(tmp_path, weights, capsys, monkeypatch):
    rgb(4, 4).save(tmp_path / "a.png")
    base = ["-i", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", *weights, "--device", "cpu"]
    code, _, stderr = run(capsys, *base, "--precision", "fp16")
    assert code == 2 and stderr.startswith("error: --precision fp16: float16 is for CUDA only")
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    code, _, stderr = run(capsys, *base, "--half", "--precision", "fp32")
    assert code == 2 and stderr.startswith("error: --half needs a CUDA device") and "Traceback" not in stderr
    code, _, stderr = run(capsys, *base, "--precision", "int8")  # argparse: not one of the choices
    assert code == 2 and "--precision: invalid choice: 'int8'" in stderr and "Traceback" not in stderr
    monkeypatch.setattr("mgsrgan.device.cpu_has_bf16", lambda: False)
    code, _, stderr = run(capsys, *base, "--precision", "bf16")
    assert code == 2 and stderr.startswith("error: --precision bf16: this CPU lacks native bfloat16")
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU lacks native bf16 (no AVX512-BF16 or AMX)")
def test_precision_bf16_writes_images_within_a_level_of_fp32(tmp_path, weights, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rgb(9, 7, seed=3).save(src / "a.png")
    outputs = {}
    for precision in ("fp32", "bf16", "auto"):
        code, stdout, _ = run(capsys, "-i", src, "-o", tmp_path / precision, "--weights", *weights, "--device", "cpu",
                              "--precision", precision, "--uncertainty")
        assert code == 0 and "1 written" in stdout
        outputs[precision] = np.asarray(Image.open(tmp_path / precision / "a.png"), dtype=int)
    exact = np.asarray(Upscaler.from_weights(weights, precision="fp32")(Image.open(src / "a.png")), dtype=int)
    assert np.array_equal(outputs["fp32"], exact)
    assert np.abs(outputs["bf16"] - outputs["fp32"]).max() <= 1
    assert np.array_equal(outputs["auto"], outputs["bf16"])  # auto = bf16 on a CPU with native bf16
    assert (tmp_path / "bf16" / "a_uncertainty.png").is_file()


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    from mgsrgan.cli.infer import collect_jobs
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "a.png")
    (tmp_path / "out.png").write_bytes(b"not a folder")
    for output in (tmp_path / "out.png", tmp_path / "out.png" / "sub"):
        with pytest.raises(UserError, match="is a file, not a folder"):
            collect_jobs([tmp_path / "in"], output, recursive=False, ext=None)
    assert len(collect_jobs([tmp_path / "in"], tmp_path / "new" / "deeper", recursive=False, ext=None)) == 1


def test_scale_must_match_the_members_and_picks_the_shipped_folder(tmp_path, weights, capsys, monkeypatch):
    rgb(6, 5).save(tmp_path / "a.png")
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", *weights, "--scale", 4)
    assert code == 2 and "--scale 4" in err and "x2 members" in err and "\n" not in err.strip()
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="shipped ensembles are x2 and x4"):
        ensemble_module.shipped_dir(3)
    # the shipped folder follows --scale: an x4 member under weights/x4 upscales x4
    monkeypatch.setenv(ensemble_module.WEIGHTS_ENV, str(tmp_path / "weights"))
    save_member(tmp_path / "weights" / "x4" / "member_0" / "pretrain.safetensors", scale=4)
    code, out, _ = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "x4", "--scale", 4)
    assert code == 0 and Image.open(tmp_path / "x4" / "a.png").size == (20, 24)
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "x2")  # default x2: not there here
    assert code == 2 and "weights/x2" in err


def test_an_unshipped_scale_is_one_line_naming_the_shipped_ones_and_outscale(tmp_path, capsys):
    """`--scale 3` said only "invalid choice"."""
    rgb(6, 5).save(tmp_path / "a.png")
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--scale", 3)
    assert code == 2 and err.strip().count("\n") == 0 and "invalid choice" not in err
    assert "--scale 3" in err and "x2 and x4" in err and "--outscale" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_checkpoint_lists_those_the_members_have(tmp_path, capsys):
    """`--checkpoint best` on a folder of pretrain and gan files (the shipped layout) said only that best was
    missing."""
    rgb(6, 5).save(tmp_path / "a.png")
    for k in range(2):
        for name in ("pretrain", "gan"):
            save_member(tmp_path / "run" / f"member_{k}" / f"{name}.safetensors", seed=k)
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--run", tmp_path / "run",
                       "--checkpoint", "best")
    assert code == 2 and "best.safetensors: missing" in err and "has: pretrain, gan" in err


def test_checkpoint_help_names_what_the_shipped_folders_hold(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "best (best validation PSNR) or last" in text and "pretrain for the shipped weights" in text
    assert "0.25" not in text  # no measured value as advice; the cards compare values


def test_outscale_resizes_the_model_output(tmp_path, weights, capsys):
    from mgsrgan.cli.infer import outscale_size, resize_antialiased

    assert outscale_size((12, 10), 2, 1.5) == (9, 8)  # LR 6 x 5 -> round(9.0) x round(7.5) (banker's: 8)
    assert outscale_size((4, 4), 2, 0.1) == (1, 1)
    flat = torch.full((3, 12, 10), 0.25)
    assert torch.allclose(resize_antialiased(flat, (5, 7)), torch.full((3, 5, 7), 0.25), atol=1e-6)
    rgba = Image.fromarray(np.random.default_rng(2).integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "a.png")
    code, _, _ = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--weights", *weights,
                     "--outscale", 3, "--uncertainty")
    out = Image.open(tmp_path / "out" / "a.png")
    assert code == 0 and out.size == (15, 18) and out.mode == "RGBA"
    assert Image.open(tmp_path / "out" / "a_uncertainty.png").size == (15, 18)
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "bad", "--weights", *weights,
                       "--outscale", 0)
    assert code == 2 and "--outscale must be in" in err


def test_installed_without_the_shipped_weights_is_one_line_saying_where_they_are(tmp_path, capsys, monkeypatch):
    """Installed away from its checkout, with no $MGSRGAN_WEIGHTS: exit 2 with how to point at the weights."""
    rgb(4, 4).save(tmp_path / "a.png")
    monkeypatch.delenv(ensemble_module.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(ensemble_module, "checkout_weights", lambda: None)
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out")
    assert code == 2 and err.strip().count("\n") == 0
    assert "repository's weights/ folder" in err and "MGSRGAN_WEIGHTS=/path/to/weights" in err


@pytest.fixture()
def clean_and_real(tmp_path, monkeypatch) -> Path:
    """$MGSRGAN_WEIGHTS holding a tiny x2/ and a tiny x2-real/ (other seeds: other outputs)."""
    from tests.conftest import save_tiny_run
    shipped = tmp_path / "weights"
    save_tiny_run(shipped / "x2", checkpoint="pretrain")
    save_tiny_run(shipped / "x2-real", checkpoint="pretrain", seed=40)
    monkeypatch.setenv(ensemble_module.WEIGHTS_ENV, str(shipped))
    return shipped


def test_real_uses_the_real_photo_folder_of_the_scale(tmp_path, clean_and_real, capsys):
    rgb(9, 7).save(tmp_path / "a.png")
    outputs = {}
    for name, extra in (("clean", []), ("real", ["--real"]), ("run", ["--run", clean_and_real / "x2-real"])):
        code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / name, "--checkpoint", "pretrain",
                           "--precision", "fp32", *extra)
        assert code == 0, err
        outputs[name] = np.asarray(Image.open(tmp_path / name / "a.png"))
    assert not np.array_equal(outputs["real"], outputs["clean"])
    assert np.array_equal(outputs["real"], outputs["run"])
    # the Python API reaches the same model
    real_api = Upscaler.pretrained(real=True, device="cpu", precision="fp32")
    assert np.array_equal(np.asarray(real_api(Image.open(tmp_path / "a.png"))), outputs["real"])


def test_real_without_its_folder_is_one_line_naming_the_campaign_stage(tmp_path, clean_and_real, capsys):
    import shutil
    shutil.rmtree(clean_and_real / "x2-real")
    rgb(6, 5).save(tmp_path / "a.png")
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--real")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "no real-photo model for x2" in err and "x2-real" in err and "configs/campaign.yaml" in err
    with pytest.raises(UserError, match="no real-photo model for x2"):
        Upscaler.pretrained(real=True)


def test_real_gan_before_its_members_are_shipped_is_one_line_naming_the_stage(tmp_path, clean_and_real, capsys):
    """The real-photo SRResNet ships before its GAN members: --real runs, --real --checkpoint gan says why not."""
    rgb(6, 5).save(tmp_path / "a.png")
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--real", "--checkpoint", "gan")
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "ships its SRResNet only" in err and "x2-real GAN stages" in err
    assert not (tmp_path / "out").exists()
    code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--real")
    assert code == 0, err


def test_real_with_run_or_weights_is_refused_in_one_line(tmp_path, clean_and_real, weights, capsys):
    rgb(6, 5).save(tmp_path / "a.png")
    for source in (["--run", clean_and_real / "x2-real"], ["--weights", *weights]):
        code, _, err = run(capsys, "-i", tmp_path / "a.png", "-o", tmp_path / "out", "--real", *source)
        assert code == 2 and err.strip().count("\n") == 0 and "--real" in err and "--run/--weights" in err, err
    assert not (tmp_path / "out").exists()


def test_help_says_when_to_use_the_real_photo_model(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--real" in text and "phones and the web (JPEG" in text and "clean downscaled images" in text
