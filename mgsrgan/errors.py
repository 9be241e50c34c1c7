"""User-facing errors. CLIs catch UserError and print its message as one line (exit code 2), never a traceback.

The weight-file errors live here rather than beside their networks or metrics: `mgsrgan.models` loads the files,
`mgsrgan.io` finds them and `mgsrgan.evaluate` scores with them, and neither of the first two may import the others.
"""


class UserError(Exception):
    """A mistake the user can fix: bad config, bad input file, missing weights, unwritable folder."""


class VGGWeightsError(UserError):
    """A VGG weight file that is missing, unreadable or does not match the trunk; the message names the file."""


class STLPIPSError(UserError):
    """The ST-LPIPS weight file is missing or unreadable, or the inputs have the wrong shape."""


class LPIPSError(UserError):
    """An LPIPS weight file is missing, unreadable or of the wrong layout, or the inputs have the wrong shape."""
