"""Device and numeric precision selection, shared by every CLI and by training."""
from __future__ import annotations

import contextlib

import torch

from mgsrgan.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True where the CPU runs bf16 convolutions natively (AVX512-BF16 or AMX): there bf16 is faster than fp32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(name: str, device: torch.device, flag: str = "--precision") -> torch.dtype:
    """auto|fp32|bf16|fp16 (`none` = fp32, the config's spelling) -> the autocast dtype (float32 = no autocast).

    auto: bf16 on CUDA with bf16 support or on a CPU with native bf16, fp16 on older CUDA cards, else fp32.
    bf16 on a CPU without native bf16 and fp16 on CPU are UserErrors naming `flag`.
    """
    name = "fp32" if name == "none" else name
    if name not in PRECISIONS:
        raise UserError(f"{flag} {name}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if name == "fp16" and device.type != "cuda":
        raise UserError(f"{flag} fp16: float16 is for CUDA only (CPU float16 convolutions are slow and inexact); "
                        "use bf16 or fp32 on CPU")
    if name == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise UserError(f"{flag} bf16: this CPU lacks native bfloat16 (no AVX512-BF16 or AMX), so bf16 would be "
                        "slower than fp32; use fp32 or auto")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast_to(dtype: torch.dtype, device: torch.device):
    """torch.autocast for `dtype` on `device`; a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
