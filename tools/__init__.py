"""Tools a user or maintainer runs from the repo root, each as `python -m tools.<name>` (speed, peers, figures,
fusion curves, scoring and shipping weights, the README's config table). Not part of the installed package: they
import `mgsrgan` and, where one needs another's helpers, each other as `tools.<name>`. What they write goes to
tools/results/ unless told otherwise."""
