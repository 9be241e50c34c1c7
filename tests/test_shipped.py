"""The README's main command on a fresh clone: the shipped ensemble upscales examples/."""
from pathlib import Path

from PIL import Image

from mgsrgan.inference_cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_readme_main_command_upscales_the_examples_with_the_shipped_ensemble(tmp_path, capsys):
    assert main(["--input_dir", str(ROOT / "examples"), "--output_dir", str(tmp_path), "--uncertainty"]) == 0
    captured = capsys.readouterr()
    assert "3 written, 0 skipped, 0 failed" in captured.out
    assert "note:" not in captured.err  # no preview notice any more (weights/NOTICE.txt is printed when present)
    for name in ("astronaut", "chelsea", "coffee"):
        lr_img, sr_img = Image.open(ROOT / "examples" / f"{name}.png"), Image.open(tmp_path / f"{name}.png")
        assert sr_img.size == (2 * lr_img.size[0], 2 * lr_img.size[1]) and sr_img.mode == "RGB"
        assert (tmp_path / f"{name}_uncertainty.png").is_file()
