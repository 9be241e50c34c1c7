"""Everything that touches a file: images in and out (one extension list, one lister, one decoder that applies EXIF
orientation, 16-bit PNG), generator checkpoints (safetensors + JSON meta), atomic writes, downloads and the
weight files they fetch, and the degradation that makes LR from HR.

May import: `mgsrgan.models`, `mgsrgan.errors`. Never `train`, `infer`, `evaluate`, `cli`.
"""
