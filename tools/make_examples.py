"""Write examples/: small low-resolution images with clear licences, from scikit-image's bundled samples.

    python -m tools.make_examples

Each image is downscaled x2 with the same antialiased bicubic the evaluation uses (degradation.py), so the
shipped x2 ensemble sees the kind of input it was trained on.
"""
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCALE = 2  # the shipped ensemble's factor
# name -> (scikit-image file, crop (top, left, height, width) of the original, licence as scikit-image states it)
SOURCES = {
    "astronaut": ("astronaut.png", (0, 128, 256, 256), "public domain (NASA, Eileen Collins)"),
    "chelsea": ("chelsea.png", (0, 0, 300, 450), "CC0 (photographer Stefan van der Walt)"),
    "coffee": ("coffee.png", (0, 0, 400, 600), "CC0 (photographer Rachel Michetti, Pikolo Espresso Bar)"),
}


def main() -> None:
    import skimage

    from mgsrgan.io.degradation import bicubic_downscale, modcrop

    data = Path(skimage.__file__).parent / "data"
    out = ROOT / "examples"
    out.mkdir(exist_ok=True)
    for name, (file, (top, left, height, width), _licence) in SOURCES.items():
        hr = np.asarray(Image.open(data / file).convert("RGB"))[top:top + height, left:left + width]
        lr = bicubic_downscale(modcrop(hr, SCALE), SCALE)
        Image.fromarray(lr).save(out / f"{name}.png", optimize=True)
        print(f"examples/{name}.png {lr.shape[1]}x{lr.shape[0]} from scikit-image {file} ({_licence})")


if __name__ == "__main__":
    main()
