"""From generators to an upscaled image: the ensemble as one `nn.Module` with the generator's call signature and its
strategies (mean, median, weighted, perceptual, best, consensus, texture) and its fusions of the pixel-loss and GAN
members (global alpha, adaptive, guided), the geometric self-ensemble, exact tiling, and `Upscaler`, the public
Python API.

May import: `mgsrgan.io`, `mgsrgan.models`, `mgsrgan.device`, `mgsrgan.errors`. Never `train`, `evaluate`, `cli`.
"""
