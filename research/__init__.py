"""Research probes whose tables a current model card or the README quotes, run from the repo root as
`python -m research.<name>`, their results beside them in research/results/. Not part of the installed package and
not product code: a probe that no card or README table is made from any more lives on in git history instead."""
