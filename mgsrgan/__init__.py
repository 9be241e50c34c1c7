"""mgsrgan: multi-generator SRGAN super-resolution. `from mgsrgan import Upscaler` for the inference API.

Imports are lazy (module __getattr__), so `import mgsrgan` stays light and submodules load only when used.
"""
from __future__ import annotations

__all__ = ["Upscaler"]


def __getattr__(name: str):
    if name == "Upscaler":
        from mgsrgan.infer.upscaler import Upscaler
        return Upscaler
    raise AttributeError(f"module 'mgsrgan' has no attribute {name!r}")
