"""Export: TorchScript and ONNX files reproduce PyTorch at other sizes than the trace's, member or ensemble."""
import json
from pathlib import Path

import pytest
import torch

from mgsrgan.io.checkpoint import save_checkpoint
from mgsrgan.infer.ensemble import build_ensemble, run_member_paths
from mgsrgan.cli.export import META_FILE, export_onnx, export_torchscript, main
from mgsrgan.models.generator import Generator

ONNX_TOLERANCE = 1e-4  # the spec's bound for onnxruntime vs PyTorch (float32, different kernels)
TORCHSCRIPT_TOLERANCE = 1e-5  # same kernels: only traced-graph fusion differences
# torch.jit.load still reads TorchScript but announces torch.export as its successor; that is not our failure.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def make_weights(folder: Path, count: int = 3, global_skip: str = "none") -> list[Path]:
    paths = []
    for k in range(count):
        torch.manual_seed(k)
        generator = Generator(scale=2, num_blocks=1, channels=8, global_skip=global_skip)
        meta = {"arch": {"scale": 2, "num_blocks": 1, "channels": 8, "global_skip": global_skip}, "member": k, "seed": k, "phase": "pretrain",
                "step": 1, "val": {"psnr": 30.0 + k, "ssim": 0.9}, "config": {}}
        paths.append(folder / f"m{k}.safetensors")
        save_checkpoint(paths[-1], {f"generator.{n}": v for n, v in generator.state_dict().items()}, meta)
    return paths


@pytest.mark.parametrize("strategy", ["mean", "consensus"])
def test_torchscript_round_trip(tmp_path, strategy):
    model = build_ensemble(make_weights(tmp_path), strategy=strategy)
    export_torchscript(model, tmp_path / "ens.pt")
    extra = {META_FILE: ""}
    loaded = torch.jit.load(str(tmp_path / "ens.pt"), _extra_files=extra)
    assert json.loads(extra[META_FILE]) == {"scale": 2, "receptive_radius": model.receptive_radius()}
    for shape in [(1, 3, 11, 17), (2, 3, 30, 7)]:
        x = torch.rand(shape)
        with torch.no_grad():
            assert float((loaded(x) - model(x)).abs().max()) < TORCHSCRIPT_TOLERANCE


@pytest.mark.parametrize("skip", ["none", "bicubic"])
def test_onnx_matches_pytorch(tmp_path, skip):
    onnxruntime = pytest.importorskip("onnxruntime", reason="optional export extra: pip install onnx onnxruntime")
    weights = make_weights(tmp_path, global_skip=skip)
    for strategy in ("median", "consensus"):
        model = build_ensemble(weights, strategy=strategy)
        export_onnx(model, tmp_path / f"{strategy}.onnx")
        session = onnxruntime.InferenceSession(str(tmp_path / f"{strategy}.onnx"), providers=["CPUExecutionProvider"])
        for shape in [(1, 3, 13, 9), (2, 3, 8, 21)]:
            x = torch.rand(shape)
            (got,) = session.run(None, {"lr": x.numpy()})
            with torch.no_grad():
                want = model(x)
            assert got.shape == tuple(want.shape)
            assert float((torch.from_numpy(got) - want).abs().max()) < ONNX_TOLERANCE
    meta = {p.key: p.value for p in pytest.importorskip("onnx").load(str(tmp_path / "consensus.onnx")).metadata_props}
    assert meta == {"scale": "2", "receptive_radius": str(model.receptive_radius())}


def test_cli_member_and_ensemble(tmp_path, capsys):
    weights = [str(p) for p in make_weights(tmp_path, count=2)]
    code = main(["--format", "torchscript", "--weights", *weights, "--member", "1", "--output",
                 str(tmp_path / "m1.pt")])
    assert code == 0 and "member 1" in capsys.readouterr().out
    loaded = torch.jit.load(str(tmp_path / "m1.pt"))
    member, x = build_ensemble([weights[1]]).members[0], torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert float((loaded(x) - member(x)).abs().max()) < TORCHSCRIPT_TOLERANCE
    code = main(["--format", "onnx", "--weights", *weights, "--strategy", "median", "--output",
                 str(tmp_path / "e.onnx")])
    out = capsys.readouterr().out
    assert code == 0 and "ensemble (median)" in out and (tmp_path / "e.onnx").is_file()
    code = main(["--format", "onnx", "--weights", *weights, "--member", "7", "--output", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --member 7") and not (tmp_path / "x.onnx").exists()
    code = main(["--format", "onnx", "--weights", *weights, "--output", str(tmp_path / "no" / "x.onnx")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_export_of_the_shipped_folder_as_a_run(tmp_path, capsys):
    """`mgsrgan export --format onnx --run weights/x2`: the shipped folders hold pretrain and gan, no best; the
    export falls back to the pretrain members (said on stderr) and reproduces their ensemble."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="optional export extra: pip install onnx onnxruntime")
    shipped = Path(__file__).resolve().parents[1] / "weights" / "x2"
    out = tmp_path / "x2.onnx"
    assert main(["--format", "onnx", "--run", str(shipped), "--output", str(out)]) == 0
    assert "no best checkpoints" in capsys.readouterr().err
    x = torch.rand(1, 3, 12, 10)
    (got,) = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"lr": x.numpy()})
    with torch.no_grad():
        want = build_ensemble(run_member_paths(shipped, "pretrain"))(x)
    assert float((torch.from_numpy(got) - want).abs().max()) < ONNX_TOLERANCE
