"""The training command: the smoke config end to end, and user mistakes as one-line errors."""
from pathlib import Path

import yaml

from mgsrgan.io.checkpoint import read_meta
from mgsrgan.cli.train import main

ROOT = Path(__file__).resolve().parents[1]


def smoke_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "smoke.yaml"), "--no-progress",
            "--set", f"data.train_dirs=[{ROOT / 'data' / 'smoke'}]", "--set", f"data.val_dir={ROOT / 'data' / 'smoke'}",
            "--set", f"train.out_dir={tmp_path}", *extra]


def test_smoke_config_leaves_a_complete_run_folder(tmp_path, capsys):
    assert main(smoke_args(tmp_path, "--name", "smoke", "--set", "train.pretrain_steps=2",
                           "--set", "train.gan_iterations=1")) == 0
    run = tmp_path / "smoke"
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["pretrain_steps"] == 2
    assert (run / "log.jsonl").stat().st_size > 0
    for k in range(2):
        assert read_meta(run / f"member_{k}" / "gan.safetensors")["member"] == k
    # the same name again is refused instead of overwriting; --resume of a finished run is a no-op success
    assert main(smoke_args(tmp_path, "--name", "smoke")) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--resume", str(run), "--no-progress"]) == 0


def test_a_smoke_run_says_its_scores_say_nothing_about_quality(tmp_path, capsys):
    """configs/smoke.yaml printed an ensemble scoring below both its members without a word."""
    from mgsrgan.config import Config, load_config
    from mgsrgan.train.loop import smoke_note

    assert main(smoke_args(tmp_path, "--name", "smoke")) == 0
    out = capsys.readouterr().out
    final = out.rindex("[val] mean of 2 gan members")
    assert out.count("says nothing about quality") == 2  # when the run starts, and under the ensemble's scores
    assert out.index("says nothing about quality") < out.index("[val]") < final < out.rindex("says nothing about")
    assert smoke_note(Config()) is None  # the paper's settings: no note
    assert smoke_note(load_config(ROOT / "config_scaled.yaml")) is None


def test_config_mistake_is_one_line(tmp_path, capsys):
    assert main(smoke_args(tmp_path, "--set", "train.g_update=2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean train.g_updates?" in err and not list(tmp_path.iterdir())


def test_unwritable_run_folder_fails_at_start_with_its_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(smoke_args(tmp_path, "--set", f"train.out_dir={blocker}", "--name", "x")) == 2
    assert f"{blocker / 'x'}: cannot write the run folder" in capsys.readouterr().err


def test_missing_training_folder_is_a_clear_error(tmp_path, capsys):
    assert main(smoke_args(tmp_path, "--set", f"data.train_dirs=[{tmp_path / 'nope'}]")) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no empty run folder left behind


def test_missing_vgg_weights_fail_before_a_run_folder_exists(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache
    args = smoke_args(tmp_path / "runs", "--set", "loss.vgg_weights=imagenet",
                      "--set", f"loss.vgg_path={tmp_path / 'nowhere' / 'vgg19-dcbb9e9d.pth'}")
    assert main(args) == 2
    assert "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
