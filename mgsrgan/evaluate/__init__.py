"""Scoring: the benchmark protocol (modcrop, border crop, Y channel; PROTOCOL.md), PSNR and SSIM, LPIPS and ST-LPIPS
(VGG16 and AlexNet trunks), and the periodic-artifact and colour-shift measures.

May import: `mgsrgan.infer` (to run ensembles), `mgsrgan.io`, `mgsrgan.models`, top-level modules. Never `train`, `cli`.
"""
