"""Print the config reference, docs/config.md, from mgsrgan/config.py: every field, its type, default and comment.

    python -m tools.config_reference > docs/config.md
"""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"ModelConfig": "model", "DataConfig": "data", "LossConfig": "loss", "TrainConfig": "train",
            "RuntimeConfig": "runtime"}


def rows() -> list[tuple[str, str, str, str]]:
    source = (ROOT / "mgsrgan" / "config.py").read_text()
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in SECTIONS:
            for item in node.body:
                if not isinstance(item, ast.AnnAssign):
                    continue
                line = lines[item.lineno - 1]
                above, i = [], item.lineno - 2  # a comment block on the lines right above the field
                while lines[i].strip().startswith("#"):
                    above.insert(0, lines[i].strip().lstrip("# "))
                    i -= 1
                comment = line.split("  # ", 1)[1] if "  # " in line else " ".join(above)
                default = ast.unparse(item.value) if item.value is not None else ""
                if default.startswith("field("):
                    default = "[]"
                out.append((f"{SECTIONS[node.name]}.{item.target.id}", ast.unparse(item.annotation), default,
                            comment))
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
