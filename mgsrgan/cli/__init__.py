"""The command lines, and the only code that touches argv, creates output folders, sets up process groups and turns
a `UserError` into a one-line message and an exit code: train, infer, evaluate, export and download, sharing
their model-selection arguments (`args.py`). `python -m mgsrgan <command>` dispatches (`main.py`).

May import anything in the package.
"""
