"""Write examples/: small low-resolution images with clear licences, from scikit-image's bundled samples.

    python -m tools.make_examples

Each image is downscaled x2 with the same antialiased bicubic the evaluation uses (degradation.py), so the
shipped x2 ensemble sees the kind of input it was trained on. One more, rocket.jpg, is a photo as phones and the
web deliver it (for `--real`): downscaled the same way, given sensor-like noise and saved as a JPEG.
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
# the real-photo example: scikit-image file, licence, noise sigma (8-bit levels) and JPEG quality after the downscale
JPEG_SOURCE = ("rocket.jpg", "public domain (SpaceX, DSCOVR launch)")
JPEG_NOISE, JPEG_QUALITY = 3, 70


def main() -> None:
    import skimage

    from mgsrgan.io.degradation import bicubic_downscale, modcrop
    from mgsrgan.io.photo_degradation import apply_fixed, parse_spec

    data = Path(skimage.__file__).parent / "data"
    out = ROOT / "examples"
    out.mkdir(exist_ok=True)
    for name, (file, (top, left, height, width), _licence) in SOURCES.items():
        hr = np.asarray(Image.open(data / file).convert("RGB"))[top:top + height, left:left + width]
        lr = bicubic_downscale(modcrop(hr, SCALE), SCALE)
        Image.fromarray(lr).save(out / f"{name}.png", optimize=True)
        print(f"examples/{name}.png {lr.shape[1]}x{lr.shape[0]} from scikit-image {file} ({_licence})")
    file, licence = JPEG_SOURCE
    lr = bicubic_downscale(modcrop(np.asarray(Image.open(data / file).convert("RGB")), SCALE), SCALE)
    noisy = apply_fixed(lr, parse_spec(f"noise:{JPEG_NOISE}"), seed=0)
    Image.fromarray(noisy).save(out / "rocket.jpg", quality=JPEG_QUALITY)
    print(f"examples/rocket.jpg {lr.shape[1]}x{lr.shape[0]} from scikit-image {file} ({licence}), noise sigma "
          f"{JPEG_NOISE}, JPEG quality {JPEG_QUALITY}")


if __name__ == "__main__":
    main()
