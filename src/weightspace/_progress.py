"""The one switch every progress bar obeys besides its caller's ``progress`` flag.

``weightspace --quiet`` sets ``WEIGHTSPACE_QUIET=1`` (an environment variable, so Ray workers
and child processes inherit it); a bar is shown only when its caller asked for it and the
switch is off.
"""

from __future__ import annotations

import os


def disabled(progress: bool) -> bool:
    """tqdm's ``disable`` for a bar its caller wants when ``progress`` is true."""
    return not progress or os.environ.get("WEIGHTSPACE_QUIET") == "1"
