"""The networks, and nothing that reads files or configs: the SRResNet generator, the SRGAN discriminator, the
feature trunks (VGG19-ImageNet, the ST-LPIPS VGG16 and AlexNet trunks) built from a state dict a caller already has,
and BatchNorm folding with the exact sub-pixel tail.

May import: torch, `mgsrgan.errors`. Never `io`, `train`, `infer`, `evaluate`, `cli` (finding or downloading a
weight file is `mgsrgan.io`'s job; the builders take tensors or a path).
"""
