"""Print the config reference, docs/config.md, from mgsrgan/config.py: every field, its type, default and comment.

    python -m tools.config_reference > docs/config.md
"""
import ast
import sys
from pathlib import Path

from mgsrgan.config import Config

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"ModelConfig": "model", "DataConfig": "data", "LossConfig": "loss", "TrainConfig": "train",
            "RuntimeConfig": "runtime"}


SOURCES = ("mgsrgan/config.py", "mgsrgan/io/photo_degradation.py")  # where config dataclasses are defined


def class_defs() -> dict[str, tuple[ast.ClassDef, list[str]]]:
    """Every class in SOURCES: name -> (its AST, its file's lines)."""
    found = {}
    for path in SOURCES:
        source = (ROOT / path).read_text()
        for node in ast.parse(source).body:
            if isinstance(node, ast.ClassDef):
                found[node.name] = (node, source.splitlines())
    return found


def live_default(key: str) -> str:
    """The default of a dotted key as a fresh Config holds it (factories run: the second order's own ranges)."""
    value = Config()
    for part in key.split("."):
        value = getattr(value, part)
    return repr(value)


def rows(name: str | None = None, prefix: str = "", classes: dict | None = None) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, comment) for every field of the sections, nested dataclasses flattened."""
    classes = classes if classes is not None else class_defs()
    if name is None:
        return [row for cls, section in SECTIONS.items() for row in rows(cls, section, classes)]
    node, lines = classes[name]
    out = []
    for item in node.body:
        if not isinstance(item, ast.AnnAssign):
            continue
        key, kind = f"{prefix}.{item.target.id}", ast.unparse(item.annotation)
        if kind in classes:  # a nested section: its own fields
            out += rows(kind, key, classes)
            continue
        line = lines[item.lineno - 1]
        above, i = [], item.lineno - 2  # a comment block on the lines right above the field
        while lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("# "))
            i -= 1
        comment = line.split("  # ", 1)[1] if "  # " in line else " ".join(above)
        out.append((key, kind, live_default(key), comment))
    return out


HEADER = """# Configuration reference

Every key below can be set in YAML or with `--set section.key=value`. An unknown key is an error naming the file,
the dotted key and the closest valid one (`config.yaml: unknown key train.g_learning_rat; did you mean
train.g_learning_rate?`); a wrong type or an impossible value (patch not divisible by the scale, `g_updates < 1`,
...) fails before any work. The resolved config is saved in the run folder and inside every checkpoint. Generated
from `mgsrgan/config.py`: `python -m tools.config_reference > docs/config.md`.
"""


def main() -> int:
    print(HEADER)
    print("| key | type | default | meaning and source |")
    print("| --- | --- | --- | --- |")
    for key, kind, default, comment in rows():
        print(f"| `{key}` | `{kind}` | `{default}` | {comment.replace('|', '/')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
