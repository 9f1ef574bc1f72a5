"""The one switch every progress bar obeys besides its caller's ``progress`` flag.

``weightspace --quiet`` sets ``WEIGHTSPACE_QUIET=1`` (an environment variable, so Ray workers
and child processes inherit it); a bar is shown only when its caller asked for it and the
switch is off.
"""

from __future__ import annotations

import os
from typing import Any


def disabled(progress: bool) -> bool:
    """tqdm's ``disable`` for a bar its caller wants when ``progress`` is true."""
    return not progress or os.environ.get("WEIGHTSPACE_QUIET") == "1"


class StepBar:
    """A tqdm bar over work steps (networks x optimiser steps) shared by the zoo builders.

    ``on_step(k)`` moves it by the ``k`` networks that just took a step (given to a local
    backend's work function); ``shard_done(expected, **postfix)`` moves it to the end of a
    finished shard's share, which also covers backends that report per shard (Ray) and
    networks that stopped early, and updates the postfix.
    """

    def __init__(self, total: int, initial: int, progress: bool, **tqdm_kw: Any) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=disabled(progress), unit_scale=True, **tqdm_kw)
        self.moved = 0  # steps reported for the shard in progress

    def on_step(self, k: int) -> None:
        self.moved += k
        self.bar.update(k)

    def shard_done(self, expected: int, **postfix: Any) -> None:
        self.bar.update(expected - self.moved)
        self.moved = 0
        self.bar.set_postfix(**postfix)

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()  # ends the bar's line on errors too
