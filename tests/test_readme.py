"""The README: one page of at most README_LINES; its install and test commands are what CI runs; its results table
is the evaluation files it names; the files it, the model cards and the docs name exist; every config key is in
docs/config.md."""
import re

import pytest

from tests.conftest import ROOT, card_row, markdown_tables, metric_cell, shipped_scores
from tools.config_reference import rows

README = (ROOT / "README.md").read_text()
README_LINES = 250
SETS = ("Set5", "Set14", "BSD100")
# The pages whose paths and links must resolve: a deleted result file or a renamed tool shows here
PAGES = ("README.md", "ARCHITECTURE.md", "weights/x2/MODEL_CARD.md", "weights/x4/MODEL_CARD.md",
         "docs/experiments.md", "docs/config.md")
# Repo paths written in backticks; run folders, ../shared and the package (whose files other tests import) aside
NAMED_PATH = re.compile(r"`((?:tools|tests|weights|docs|configs|examples)/[\w./-]+\.(?:md|json|png|txt|py|sh|yaml))`")


def test_the_readme_is_one_page():
    lines = README.count("\n")
    assert lines <= README_LINES, f"README.md: {lines} lines; results go to the model cards, history to docs/"


def test_every_config_key_is_in_the_config_reference():
    reference = (ROOT / "docs" / "config.md").read_text()
    missing = [key for key, *_ in rows() if f"`{key}`" not in reference]
    assert not missing, f"docs/config.md lacks {missing}: python -m tools.config_reference > docs/config.md"


def test_files_named_in_readme_commands_exist():
    for path in set(re.findall(r"--config (\S+\.yaml)", README)):
        assert (ROOT / path).is_file(), path
    for script in ("train.py", "inference.py", "evaluate.py"):
        assert f"python {script}" in README and (ROOT / script).is_file()


@pytest.mark.parametrize("page", PAGES)
def test_files_and_links_a_page_names_exist(page):
    text = (ROOT / page).read_text()
    links = [(ROOT / page).parent / link for link in re.findall(r"\]\(([^)#:]+)\)", text)]  # relative, no URLs
    named = [ROOT / path for path in NAMED_PATH.findall(text) if "<" not in path]
    missing = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)
               for p in links + named if not p.resolve().exists()]
    assert not missing, f"{page} names files that do not exist: {missing}"


def test_readme_install_and_test_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements.txt" in README and "pip install -r requirements.txt" in ci
    assert "python -m pytest -q" in README and "python -m pytest -q" in ci
    assert "python -m venv .venv && . .venv/bin/activate" in README
    requirements = (ROOT / "requirements.txt").read_text()
    pinned = re.search(r"^torch==(\S+)$", requirements, re.M).group(1)
    assert f"`torch=={pinned}`" in README, "the README names the pinned torch"
    cpu_wheel = f"pip install torch=={pinned} --index-url https://download.pytorch.org/whl/cpu"
    assert cpu_wheel in " ".join(README.split()), "the README says how to get the CPU wheel"


def test_readme_says_what_inputs_the_models_expect():
    assert "expect clean inputs" in README and "JPEG" in README


def test_readme_results_table_is_the_shipped_evaluation_files():
    """Each row of the README's one results table, cell by cell, against the evaluation JSON beside the weights:
    x2 rows from weights/x2, x4 rows from weights/x4; every row names its scale."""
    (table,) = markdown_tables(README, "## Results")
    assert {label[:2] for label, *_ in table} == {"x2", "x4"}
    for label, *cells in table:
        scale = int(label[1])
        source, model = card_row(label)
        assert cells == [metric_cell(shipped_scores(scale, source, model, name)) for name in SETS], label
    cards = [f"weights/x{scale}/MODEL_CARD.md" for scale in (2, 4)]
    assert all(f"]({card})" in README for card in cards), "the results table points to the cards"
