"""The README documents every config key, and the files its commands name exist."""
import re
from pathlib import Path

from tools.config_reference import rows

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_config_key_is_in_the_readme_reference():
    missing = [key for key, *_ in rows() if f"`{key}`" not in README]
    assert not missing, f"README's config reference lacks {missing}; paste `python -m tools.config_reference`"


def test_files_named_in_readme_commands_exist():
    for path in set(re.findall(r"--config (\S+\.yaml)", README)):
        assert (ROOT / path).is_file(), path
    for script in ("train.py", "inference.py", "evaluate.py"):
        assert f"python {script}" in README and (ROOT / script).is_file()


def test_readme_install_and_test_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements.txt" in README and "pip install -r requirements.txt" in ci
    assert "python -m pytest -q" in README and "python -m pytest -q" in ci
