"""tools/fusion_curve.py's reading of a fusion against the global blend's curve: pure interpolation."""
from __future__ import annotations

import pytest

from tools.fusion_curve import against_global, images_ahead

# a global curve shaped like the shipped one: PSNR peaks at alpha 0.5, ST-LPIPS-Alex falls all the way
GLOBAL = {"global alpha 0": (29.70, 0.030), "global alpha 0.5": (29.74, 0.020), "global alpha 1": (29.60, 0.010)}


def test_against_global_reads_both_ways_on_the_falling_branch():
    points = {**GLOBAL, "on the branch, better": (29.67, 0.012), "above the peak": (29.75, 0.022),
              "worse": (29.60, 0.0125), "outside": (29.50, 0.040)}
    versus = against_global(points)
    # at PSNR 29.67 the branch (alpha 0.5 -> 1) is halfway: ST-LPIPS 0.015; at 0.012 the curve's PSNR is 29.628
    assert versus["on the branch, better"][0] == "-0.0030"
    assert versus["on the branch, better"][1] == "+0.0420"
    assert versus["above the peak"] == ("above every alpha's PSNR", f"{29.75 - (29.74 - 0.2 * 0.04):+.4f}")
    assert versus["worse"][1] == f"{29.60 - 29.635:+.4f}"  # below the curve at equal ST-LPIPS-Alex
    assert versus["outside"] == ("outside the curve", "outside the curve")
    assert versus["global alpha 0"][0] == "rising branch" and versus["global alpha 1"] == ("+0.0000", "+0.0000")


def test_images_ahead_counts_each_image_against_its_own_curve():
    per_image = {name: {"psnr": [db, db - 1.0], "stlpips_alex": [alex, alex]} for name, (db, alex) in GLOBAL.items()}
    per_image["fusion"] = {"psnr": [29.70, 28.60], "stlpips_alex": [0.015, 0.015]}  # image 0 above, image 1 below
    per_image["off"] = {"psnr": [29.0, 29.0], "stlpips_alex": [0.05, 0.015]}  # image 0 outside its curve's range
    ahead = images_ahead(per_image)
    assert ahead["fusion"] == (1, 2)
    assert ahead["off"] == (1, 1)
    assert ahead["global alpha 0.5"] == (0, 2)  # on its own curve: not above it


@pytest.mark.parametrize("peak", ["global alpha 0", "global alpha 1"])
def test_against_global_when_the_peak_is_an_end(peak):
    points = {name: (30.0 if name == peak else 29.0, alex) for name, (_, alex) in GLOBAL.items()}
    versus = against_global(points)
    assert all(versus[name][1] == "+0.0000" for name in GLOBAL)
