"""GPU smoke test: the CUDA paths no CPU test reaches, on tiny models, in under two minutes. The checks run as this
file, a script in a process of its own; the tests below run it (marker `gpu`: `python -m pytest -m gpu`, skipped
without CUDA), and its CPU dry run keeps it from rotting where no GPU is lent:

    python tests/test_gpu_smoke.py                  # on a CUDA machine: one PASS / FAIL / SKIP line per check
    python tests/test_gpu_smoke.py --device cpu     # dry run of the same script on CPU (gloo, bf16 only)

Checks (each prints PASS, FAIL with its first error line, or SKIP with the reason):
  card            the card's name, compute capability, memory; torch, CUDA and NCCL versions
  ddp_nccl        2 processes (one GPU each, or both on the one GPU), the project's process group backend
                  ("cpu:gloo,cuda:nccl", mgsrgan.train.distributed): DistributedDataParallel steps on a tiny
                  Generator with channels_last inputs under bf16 autocast leave identical weights on both ranks;
                  all_reduce_sum and any_rank of Python floats (CPU tensors in an NCCL group, issue 13 item 1)
                  and a CrossRankBatchNorm that sees the global batch. NCCL refuses two ranks on one GPU in most
                  versions ("Duplicate GPU"): then SKIP, and the same check runs as one process
  autocast        a generator's forward and backward under bf16 and fp16 autocast: finite, close to fp32
  channels_last   training loss and gradients the same in NHWC as in NCHW; Upscaler (NHWC) equals the plain module
  consensus_fp16  Upscaler(precision="fp16") with strategy consensus on members that agree (1 / VARIANCE_FLOOR
                  overflowed fp16 to NaN once): finite and within fp16 rounding of fp32
  train_cli       `python train.py --config configs/smoke.yaml` on CUDA with bf16 autocast and channels_last, and
                  torchrun with 2 processes when there are 2 GPUs: exit 0 and both phases' checkpoints
Exit status 1 if any check failed.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from mgsrgan.infer.ensemble import Ensemble
from mgsrgan.infer.upscaler import Upscaler
from mgsrgan.models.generator import Generator
from mgsrgan.train import distributed

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(scale=2, num_blocks=1, channels=8)  # the test suite's tiny generator
BF16_TOLERANCE = 0.05  # max |diff| vs fp32 of a tiny generator's output: bf16 keeps 8 mantissa bits
FP16_TOLERANCE = 0.01  # fp16 keeps 11
LAYOUT_TOLERANCE = 1e-4  # NHWC vs NCHW in fp32: only the kernels' summation order differs
PROCESS_TIMEOUT_S = 90  # a check's child processes; the whole script is meant to take under 2 minutes


def tiny_generator(seed: int, device: torch.device) -> Generator:
    torch.manual_seed(seed)
    return Generator(**TINY).to(device)


def check_card(device: torch.device) -> str:
    if device.type != "cuda":
        return f"SKIP CPU dry run ({torch.__version__})"
    props = torch.cuda.get_device_properties(0)
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if dist.is_nccl_available() else "none"
    return (f"PASS {torch.cuda.device_count()} x {props.name}, compute {props.major}.{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}, NCCL {nccl}, "
            f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_worker(rank: int, world_size: int, port: int, device_type: str, result_dir: str) -> None:
    """One rank of the ddp_nccl check; writes OK or the error to result_dir/rank<k>.txt."""
    out = Path(result_dir) / f"rank{rank}.txt"
    try:
        gpus = torch.cuda.device_count() if device_type == "cuda" else 0
        local = rank % gpus if gpus else 0
        device = torch.device("cuda", local) if gpus else torch.device("cpu")
        if gpus:
            torch.cuda.set_device(device)
        dist.init_process_group(distributed.process_group_backend(device), init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=world_size)
        world = distributed.World(rank=rank, world_size=world_size, local_rank=local)
        # Python floats through the group (CPU tensors in an NCCL group: the gloo side must serve them)
        assert distributed.all_reduce_sum([1.0, float(rank)], world) == [float(world_size),
                                                                         float(sum(range(world_size)))]
        assert distributed.any_rank(rank == world_size - 1, world) is True
        generator = distributed.cross_rank_batchnorm(tiny_generator(0, device))
        model = torch.nn.parallel.DistributedDataParallel(generator, device_ids=[local] if gpus else None)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        dtype = torch.bfloat16 if (gpus and torch.cuda.is_bf16_supported()) or not gpus else torch.float16
        for step in range(3):
            torch.manual_seed(100 * step + rank)  # each rank its own half of the batch
            lr_img = torch.rand(2, 3, 12, 12, device=device).contiguous(memory_format=torch.channels_last)
            hr_img = torch.rand(2, 3, 24, 24, device=device)
            with torch.autocast(device_type=device.type, dtype=dtype):
                loss = F.l1_loss(model(lr_img).float(), hr_img)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss), f"step {step}: loss {loss.item()}"
        flat = torch.cat([p.detach().float().flatten() for p in generator.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world_size)]
        dist.all_gather(gathered, flat)
        spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
        assert spread == 0.0, f"ranks' weights differ by {spread:.2e} after 3 DDP steps"
        distributed.barrier(world)
        out.write_text("OK")
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        out.write_text(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ddp(world_size: int, device: torch.device) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        context = mp.spawn(ddp_worker, args=(world_size, free_port(), device.type, tmp), nprocs=world_size,
                           join=False)
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                return [f"timed out after {PROCESS_TIMEOUT_S} s"]
        return [(Path(tmp) / f"rank{r}.txt").read_text() if (Path(tmp) / f"rank{r}.txt").exists() else "no result"
                for r in range(world_size)]


def check_ddp(device: torch.device) -> str:
    results = run_ddp(2, device)
    if all(r == "OK" for r in results):
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        where = "2 GPUs" if gpus >= 2 else ("one GPU" if gpus else "CPU, gloo")
        return f"PASS 2 processes ({where}): identical weights after 3 DDP steps, CPU floats reduced"
    errors = [r for r in results if r != "OK"]
    if any("Duplicate GPU" in r or "duplicate GPU" in r.lower() for r in errors):
        single = run_ddp(1, device)
        state = "PASS" if single == ["OK"] else "FAIL " + single[0].splitlines()[0]
        return (f"SKIP 2 processes: NCCL refuses two ranks on one GPU (\"Duplicate GPU detected\"); as 1 process: "
                f"{state}")
    return "FAIL " + errors[0].splitlines()[0]


def check_autocast(device: torch.device) -> str:
    generator = tiny_generator(1, device)
    lr_img = torch.rand(2, 3, 16, 16, device=device)
    reference = generator(lr_img).detach()
    dtypes = [torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    report = []
    for dtype, tolerance in zip(dtypes, (BF16_TOLERANCE, FP16_TOLERANCE)):
        generator.zero_grad()
        with torch.autocast(device_type=device.type, dtype=dtype):
            out = generator(lr_img)
        loss = out.float().square().mean()
        loss.backward()
        grads_finite = all(torch.isfinite(p.grad).all() for p in generator.parameters() if p.grad is not None)
        diff = float((out.detach().float() - reference).abs().max())
        if not (out.dtype == dtype and torch.isfinite(out).all() and grads_finite and diff < tolerance):
            return f"FAIL {dtype}: output {out.dtype}, max |diff| vs fp32 {diff:.2e}, finite grads {grads_finite}"
        report.append(f"{str(dtype).split('.')[-1]} max |diff| {diff:.1e}")
    skipped = "" if device.type == "cuda" else " (fp16 autocast: CUDA only)"
    return "PASS " + ", ".join(report) + skipped


def check_channels_last(device: torch.device) -> str:
    generator = tiny_generator(2, device)
    lr_img, hr_img = torch.rand(2, 3, 16, 16, device=device), torch.rand(2, 3, 32, 32, device=device)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        generator.zero_grad()
        model = generator.to(memory_format=layout)
        loss = F.l1_loss(model(lr_img.contiguous(memory_format=layout)), hr_img)
        loss.backward()
        results.append((loss.item(), torch.cat([p.grad.flatten() for p in generator.parameters()]).clone()))
    loss_diff = abs(results[0][0] - results[1][0])
    grad_diff = float((results[0][1] - results[1][1]).abs().max())
    generator = tiny_generator(3, device).eval()
    with torch.no_grad():
        plain = generator(lr_img).clamp(0, 1)
    upscaler = Upscaler(generator, device=device.type, precision="fp32")  # folds nothing, runs NHWC
    out_diff = float((upscaler.upscale_tensor(lr_img) - plain).abs().max())
    worst = max(loss_diff, grad_diff, out_diff)
    state = "PASS" if worst < LAYOUT_TOLERANCE else "FAIL"
    return f"{state} NHWC vs NCHW: loss {loss_diff:.1e}, grads {grad_diff:.1e}, Upscaler output {out_diff:.1e}"


def check_consensus_fp16(device: torch.device) -> str:
    if device.type != "cuda":
        return "SKIP fp16 inference is CUDA only (mgsrgan.device.resolve_precision)"
    members = [tiny_generator(4, device).eval() for _ in range(3)]  # identical: they agree everywhere
    members.append(tiny_generator(5, device).eval())  # and one that strays
    lr_img = torch.rand(1, 3, 20, 20, device=device)
    outputs = {}
    for precision in ("fp32", "fp16"):
        model = Ensemble([m for m in members], strategy="consensus").eval()
        outputs[precision] = Upscaler(model, device="cuda", precision=precision).upscale_tensor(lr_img)
    finite = bool(torch.isfinite(outputs["fp16"]).all())
    diff = float((outputs["fp16"] - outputs["fp32"]).abs().max())
    state = "PASS" if finite and diff < FP16_TOLERANCE else "FAIL"
    return f"{state} finite {finite}, max |diff| vs fp32 {diff:.1e}"


def check_train_cli(device: torch.device) -> str:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    amp = "bf16" if (gpus and torch.cuda.is_bf16_supported()) else ("fp16" if gpus else "none")
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("1 process", [sys.executable, "train.py"])]
        if gpus >= 2:
            runs.append(("torchrun 2 processes", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", "2", "train.py"]))
        for index, (what, launcher) in enumerate(runs):
            name = f"gpu-smoke-{index}"
            command = launcher + ["--config", "configs/smoke.yaml", "--name", name, "--no-progress",
                                  "--set", f"runtime.device={device.type}", "--set", f"runtime.amp={amp}",
                                  "--set", "runtime.channels_last=true", "--set", f"train.out_dir={tmp}"]
            try:
                result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return f"FAIL {what}: over {PROCESS_TIMEOUT_S} s"
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
                return f"FAIL {what}: exit {result.returncode}: {last}"
            missing = [f"member_{k}/{phase}" for k in range(2) for phase in ("pretrain", "gan")
                       if not (Path(tmp) / name / f"member_{k}" / f"{phase}.safetensors").is_file()]
            if missing:
                return f"FAIL {what}: no {', '.join(missing)} checkpoint"
            report.append(what)
    return f"PASS {' and '.join(report)}, amp {amp}, channels_last" + ("" if gpus >= 2 else " (torchrun: needs 2 GPUs)")


CHECKS = (("card", check_card), ("ddp_nccl", check_ddp), ("autocast", check_autocast),
          ("channels_last", check_channels_last), ("consensus_fp16", check_consensus_fp16),
          ("train_cli", check_train_cli))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run of the script")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in CHECKS], help="run these checks only")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (--device cpu for a dry run)")
        return 2
    device = torch.device(args.device)
    failed, started = 0, time.perf_counter()
    for name, check in CHECKS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            line = check(device)
        except Exception as err:  # noqa: BLE001 - one line per failed check, the others still run
            line = f"FAIL {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        failed += line.startswith("FAIL")
        print(f"{line.split(' ', 1)[0]:4} {name:15} {line.split(' ', 1)[1] if ' ' in line else ''} "
              f"[{time.perf_counter() - t0:.1f} s]", flush=True)
    print(f"{'FAIL' if failed else 'PASS'} {failed} failed, {time.perf_counter() - started:.0f} s in all")
    return 1 if failed else 0


def smoke(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (on a GPU machine: "
                                                         "python tests/test_gpu_smoke.py)")
def test_gpu_smoke_passes_on_cuda():
    result = smoke(timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], result.stdout
    for check in ("card", "ddp_nccl", "autocast", "channels_last", "consensus_fp16", "train_cli"):
        assert any(line.split()[1:2] == [check] for line in lines), f"{check} not reported:\n{result.stdout}"


def test_gpu_smoke_dry_run_on_cpu():
    result = smoke("--device", "cpu", "--only", "card", "autocast", "channels_last", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    status = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines()[:-1]}
    assert status == {"card": "SKIP", "autocast": "PASS", "channels_last": "PASS"}, result.stdout
    assert result.stdout.splitlines()[-1].startswith("PASS 0 failed")


if __name__ == "__main__":
    sys.exit(main())
