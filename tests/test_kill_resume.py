"""Kill -9 at random moments (benchmarks/kill_resume.py): training SIGKILLed and resumed ends bit-identical to an
uninterrupted run, with every file loadable after every kill. Two kills here; the benchmark's 20 are `slow`."""
from __future__ import annotations

import json
import random

import pytest

from benchmarks.kill_resume import main, trial


def test_a_sigkilled_lockstep_run_resumes_to_the_uninterrupted_one(tmp_path):
    result = trial(tmp_path, "lockstep", 2, random.Random(3), pretrain_steps=4, gan_iterations=2, in_process=True)
    assert result["kills"] == 2, result["rows"]
    assert result["problems"] == [] and all(row["group_at_one_step"] for row in result["rows"])
    assert result["identical"], result["differences"]


@pytest.mark.slow
def test_twenty_random_sigkills_in_both_schedules_and_phases_end_bit_identical(tmp_path):
    out = tmp_path / "kill_resume.json"
    assert main(["--kills", "20", "--out", str(out), "--work", str(tmp_path / "work")]) == 0
    result = json.loads(out.read_text())
    assert result["kills"] == 20 and result["identical"] and result["unloadable_or_split"] == 0
    assert result["kills_in_a_checkpoint_write"] >= 1
    for schedule in result["trials"]:
        assert schedule["kills_per_phase"]["pretrain"] >= 1 and schedule["kills_per_phase"]["gan"] >= 1, schedule
