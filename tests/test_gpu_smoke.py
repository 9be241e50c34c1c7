"""benchmarks/gpu_smoke.py: on a CUDA machine every check passes (marker `gpu`: `python -m pytest -m gpu`); here, its
CPU dry run keeps the script from rotting where no GPU is lent."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_smoke.py"


def smoke(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (on a GPU machine: "
                                                         "python benchmarks/gpu_smoke.py)")
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
