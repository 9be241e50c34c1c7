"""VGG feature trunk for the SRGAN content loss (work in progress: layer names first)."""
from __future__ import annotations

# phi_{i,j} names of VGG19's 16 convolutions: block i (1..5), conv j within it (Simonyan & Zisserman 2015, config E;
# named this way by Ledig et al. 2017, sec. 2.2.1).
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_LAYERS = tuple(f"{i}_{j}" for i, n in enumerate(VGG19_BLOCKS, start=1) for j in range(1, n + 1))
