"""The model cards: one page each, and their metric tables are the evaluation files shipped beside the weights."""
import pytest

from tests.conftest import ROOT, card_row, guard_cell, markdown_tables, metric_cell, shipped_scores

CARD_LINES = 150  # one page a user reads in two minutes
SETS = ("Set5", "Set14", "BSD100")
# section of the card -> how its cells are printed
CHECKED_SECTIONS = (("## Metrics beside the peers", metric_cell), ("### The GAN side's guards", guard_cell))


def card(scale: int) -> str:
    return (ROOT / "weights" / f"x{scale}" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("scale", [2, 4])
def test_a_model_card_is_one_page(scale):
    lines = card(scale).count("\n")
    assert lines <= CARD_LINES, f"weights/x{scale}/MODEL_CARD.md: {lines} lines; history goes to docs/experiments.md"


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("heading, cell", CHECKED_SECTIONS)
def test_card_tables_are_the_shipped_evaluation_files(scale, heading, cell):
    """Every row of the card's metric and guard tables, cell by cell, against evaluate.py's and peers.py's JSON:
    a re-evaluation that is not pasted, or a number typed by hand, fails here."""
    rows = markdown_tables(card(scale), heading)[0]  # the section's first table
    assert len(rows) >= 4
    for label, *cells in rows:
        source, model = card_row(label)
        assert cells == [cell(shipped_scores(scale, source, model, name)) for name in SETS], label


CAMPAIGN_CARD = ROOT / "weights" / "campaign" / "x2-pixel" / "MODEL_CARD.md"


def test_the_campaign_card_is_one_page_and_its_table_is_its_evaluation_file():
    """The campaign network's row against eval_pretrain.json beside it; the shipped rows against weights/x2's files;
    the step in its label is the one the card's training table describes."""
    import json
    import re

    text = CAMPAIGN_CARD.read_text()
    assert text.count("\n") <= CARD_LINES
    evaluation = json.loads((CAMPAIGN_CARD.parent / "eval_pretrain.json").read_text())
    rows = markdown_tables(text, "## Metrics beside the peers")[0]
    label, *cells = rows[0]
    step = int(re.search(r"step ([\d,]+)", label).group(1).replace(",", ""))
    assert f"| this copy | step {step:,} of" in text  # the copy evaluated is the one the training table describes
    assert cells == [metric_cell(evaluation["sets"][name]["models"]["member_0"]) for name in SETS]
    for label, *cells in rows[1:]:
        source, model = card_row(label)
        assert cells == [metric_cell(shipped_scores(2, source, model, name)) for name in SETS], label
