"""Shell entry points: they parse, and refuse clearly where they cannot run."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal; on a GPU the script trains")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_gpu_script_refuses_without_a_gpu_in_one_line(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "train_gpu.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: scripts/train_gpu.sh needs a CUDA GPU")
    assert "Traceback" not in done.stderr
