"""Write the synthetic images in data/smoke/ (procedural, so they carry no licence): python -m tools.make_smoke_data"""
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 96  # px; small enough to keep the repo light, large enough for 32 px patches
COUNT = 4


def make(index: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    freq = rng.uniform(2, 12, size=3)
    phase = rng.uniform(0, np.pi, size=3)
    channels = [0.5 + 0.35 * np.sin(2 * np.pi * f * (x * np.cos(p) + y * np.sin(p)) + p)
                for f, p in zip(freq, phase)]
    img = np.stack(channels, axis=-1)
    cy, cx, r = rng.uniform(0.3, 0.7, size=2).tolist() + [rng.uniform(0.1, 0.3)]
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] *= 0.3  # a dark disc: sharp edges
    img += rng.normal(0, 0.02, size=img.shape)  # a little texture
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "data" / "smoke"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(COUNT):
        Image.fromarray(make(i)).save(out / f"smoke_{i}.png")
    print(f"wrote {COUNT} images to {out}")
