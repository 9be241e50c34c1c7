"""Fuzzed image files (benchmarks/fuzz_images.py): every one reads, or is refused with a one-line UserError naming
it; none hangs or takes memory beyond what the pixel limit implies. 300 cases here, the full 10,000 with `-m slow`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def fuzz(cases: int, timeout: int) -> dict:
    """The script in a process of its own, so its peak memory is its own."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz_images.py"), "--cases", str(cases),
                             "--json", "--no-write"], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check(summary: dict, cases: int) -> None:
    assert summary["cases"] == cases
    assert summary["failures"] == [], summary["failures"][:5]
    assert summary["max_seconds"] < 5.0
    assert summary["peak_rss_growth_mib"] <= summary["memory_bound_mib"]
    outcomes = {kind for counts in summary["outcomes"].values() for kind in counts}
    assert {"ok", "refused"} <= outcomes and any("png16" in kind for kind in outcomes)  # every path reached


def test_fuzzed_files_are_read_or_refused_in_one_line():
    check(fuzz(300, timeout=600), 300)


@pytest.mark.slow
def test_ten_thousand_fuzzed_files():
    check(fuzz(10_000, timeout=3600), 10_000)
