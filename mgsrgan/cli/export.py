"""`mgsrgan export --format onnx|torchscript (--run RUN | --weights F ...) [--member K] --output FILE`.

Exports one member (a plain Generator) or the whole ensemble with its strategy (and --alpha blend) baked in. The
file takes (B, 3, h, w) float32 RGB in [0, 1] named "lr" and gives (B, 3, h*s, w*s) named "sr" (unclipped); ONNX
has dynamic batch/height/width axes, TorchScript is traced (shape-generic: no shape-dependent Python branches).
Both carry {"scale", "receptive_radius"} (ONNX metadata_props / TorchScript extra file "mgsrgan.json") so a
consumer can tile with a seamless pad. After writing, the file is run against PyTorch on an image of another size
than the trace's (ONNX via onnxruntime when installed: `pip install onnx onnxruntime`).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from mgsrgan.io.atomic import atomic_write
from mgsrgan.errors import UserError
from mgsrgan.cli.args import add_model_arguments, model_from_args

ONNX_OPSET = 17  # opset 17 (ONNX 1.12, 2022): every op used here; runs on any onnxruntime >= 1.12
TRACE_SIZE = (1, 3, 24, 20)  # example input for tracing: small, non-square so H and W cannot get swapped
CHECK_SIZE = (2, 3, 19, 27)  # a different batch and odd sizes, to prove the axes really are dynamic
TOLERANCE = 1e-4  # max abs difference (image units) accepted between the exported file and PyTorch
META_FILE = "mgsrgan.json"


class ExportCheckError(UserError):
    """The exported file does not reproduce PyTorch's output."""


def describe(model: nn.Module) -> dict:
    return {"scale": int(model.scale), "receptive_radius": int(model.receptive_radius())}


def export_onnx(model: nn.Module, path: Path, *, opset: int = ONNX_OPSET) -> None:
    """Write `model` (eval mode, CPU, float32) as ONNX with dynamic B/H/W axes, atomically."""
    model = model.eval().to("cpu", torch.float32)
    example = torch.rand(TRACE_SIZE)

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its own deprecation
            # dynamo=False: the torch.export-based exporter needs onnxscript; the classic one needs nothing extra
            torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=opset, input_names=["lr"],
                              output_names=["sr"], dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                                                                 "sr": {0: "batch", 2: "height_x_scale",
                                                                        3: "width_x_scale"}})
        try:
            import onnx
        except ImportError:
            return  # metadata is a convenience; the graph is complete without it
        proto = onnx.load(tmp)
        for key, value in describe(model).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.save(proto, tmp)

    atomic_write(Path(path), write)


def export_torchscript(model: nn.Module, path: Path) -> None:
    """Trace `model` (eval, CPU, float32) and save it with its scale/receptive radius as an extra file, atomically."""
    model = model.eval().to("cpu", torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice; the traced graph is what we check below
        with torch.no_grad():
            traced = torch.jit.trace(model, torch.rand(TRACE_SIZE), check_trace=False)  # checked after saving
    extra = {META_FILE: json.dumps(describe(model))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.save: still the TorchScript writer
        atomic_write(Path(path), lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))


def check_onnx(model: nn.Module, path: Path) -> float | None:
    """Max abs difference between onnxruntime and PyTorch on CHECK_SIZE input; None if onnxruntime is missing."""
    try:
        import onnxruntime
    except ImportError:
        return None
    x = torch.rand(CHECK_SIZE)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"lr": x.numpy()})
    with torch.no_grad():
        want = model.eval()(x)
    return float((torch.from_numpy(got) - want).abs().max())


def check_torchscript(model: nn.Module, path: Path) -> float:
    """Max abs difference between the saved TorchScript file and PyTorch on CHECK_SIZE input."""
    x = torch.rand(CHECK_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the TorchScript reader
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        return float((loaded(x) - model.eval()(x)).abs().max())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgsrgan export", description="Export one member or the whole ensemble "
                                     "(strategy baked in) to ONNX or TorchScript, checked against PyTorch.")
    parser.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    add_model_arguments(parser)
    parser.add_argument("--member", type=int, default=None,
                        help="export only member K (0-based) as a plain generator; default: the whole ensemble")
    parser.add_argument("--output", type=Path, required=True, help="file to write (.onnx / .pt)")
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help="ONNX opset version (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        model = model_from_args(args)
        what = f"ensemble ({model.strategy})"
        if args.member is not None:
            if not 0 <= args.member < len(model.members):
                raise UserError(f"--member {args.member}: there are {len(model.members)} members "
                                f"(0..{len(model.members) - 1})")
            model = model.members[args.member]
            what = f"member {args.member}"
        if not args.output.parent.is_dir():
            raise UserError(f"{args.output}: folder {args.output.parent} does not exist")
        try:
            if args.format == "onnx":
                export_onnx(model, args.output, opset=args.opset)
                diff = check_onnx(model, args.output)
            else:
                export_torchscript(model, args.output)
                diff = check_torchscript(model, args.output)
        except OSError as err:
            raise UserError(f"{args.output}: cannot write ({err.strerror or err})") from None
        if diff is not None and diff > TOLERANCE:
            raise ExportCheckError(f"{args.output}: exported model differs from PyTorch by {diff:.2e} "
                                   f"(> {TOLERANCE:.0e})")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    check = "not checked (pip install onnxruntime)" if diff is None else f"max abs diff vs PyTorch {diff:.1e}"
    print(f"wrote {args.output}: {what}, {args.format}, {json.dumps(describe(model))}; {check}")
    return 0
