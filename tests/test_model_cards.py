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


# The real-photo cards (weights/x<s>-real): per LR degradation, tools/remeasure_real.sh writes eval_<name>_<tag>.json
REAL_TAGS = {"held-out": ("clean", "jpeg_75", "noise_5_jpeg_50"), "BSD100": ("clean", "jpeg_75")}  # columns
REAL_ROWS = {  # row label, parenthetical left out -> (name in the file stem, model)
    "bicubic": ("pretrain", "bicubic"),
    "the clean SRResNet": ("clean_model", "member_0"),
    "real-photo SRResNet": ("pretrain", "member_0"),
    "real-photo GAN ensemble, texture-preserving mean": ("gan", "ensemble-texture"),
    "real-photo GAN member_0": ("gan", "member_0"),
    "real-photo GAN member_1": ("gan", "member_1"),
    "real-photo GAN member_2": ("gan", "member_2"),
}


def real_cell(scores: dict, bicubic: dict) -> str:
    """Y PSNR (its gain over bicubic on the same inputs) / ST-LPIPS-Alex, as the real-photo tables print them."""
    return f"{scores['psnr']:.2f} ({scores['psnr'] - bicubic['psnr']:+.2f}) / {scores['stlpips_alex']:.4f}"


@pytest.mark.parametrize("scale", [s for s in (2, 4) if (ROOT / "weights" / f"x{s}-real").is_dir()])
def test_real_photo_card_tables_are_its_evaluation_files(scale):
    import json
    import re

    folder = ROOT / "weights" / f"x{scale}-real"
    text = (folder / "MODEL_CARD.md").read_text()
    assert text.count("\n") <= CARD_LINES
    for heading, set_name in (("### Held-out images", "held-out"), ("### BSD100", "BSD100")):
        rows = markdown_tables(text, heading)[0]
        names = [re.sub(r"\s*\(.*\)$", "", label) for label, *_ in rows]
        assert {"bicubic", "the clean SRResNet", "real-photo SRResNet"} <= set(names)
        for row_name, (label, *cells) in zip(names, rows):
            name, model = REAL_ROWS[row_name]
            expected = []
            for tag in REAL_TAGS[set_name]:
                evaluation = json.loads((folder / f"eval_{name}_{tag}.json").read_text())
                assert (re.sub(r"[:,]", "_", evaluation["degrade"] or "") or "clean") == tag
                results = evaluation["results"][str(scale)][set_name]
                expected.append(real_cell(results[model], results["bicubic"]))
            assert cells == expected, label
