"""Training a K-member ensemble: the loop and its two phases, one member's models and optimizers, the pixel, content,
adversarial and grid losses, the n:m update schedule, the training data (patch streams, bootstrap, held-out
validation), distributed helpers, the run log and validation.

May import: `mgsrgan.evaluate` (metrics), `mgsrgan.infer`, `mgsrgan.io`, `mgsrgan.models`, top-level modules. Never `cli`.
"""
