"""Writing a target atomically, whatever the target: the generated step code and the copy of
serving_core/ it runs with, and the swap of a finished staging directory into the output.

A target writes everything into a staging directory beside its output first; `swap_in` moves
the finished models in, so a failed build leaves the output as it was.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import model_repository
import serving_core

log = logging.getLogger(__name__)

BACKEND_DIR = Path(model_repository.__file__).parent  # the step code both targets copy
CORE_DIR = Path(serving_core.__file__).parent  # copied beside every step
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def swap_in(staging: Path, output: Path, names: dict[str, str]) -> None:
    """Move `staging/<key>` to `output/<value>` for every entry; existing targets are moved
    aside first and put back if any move fails, so `output` ends complete, old or new."""
    retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=staging))
    moved_old, moved_new = [], []
    try:
        for final in names.values():
            if (output / final).exists():
                (output / final).rename(retired / final)
                moved_old.append(final)
        for staged, final in names.items():
            (staging / staged).rename(output / final)
            moved_new.append((staged, final))
    except OSError:
        for staged, final in moved_new:
            (output / final).rename(staging / staged)
        for final in moved_old:
            (retired / final).rename(output / final)
        raise
    log.info("wrote %s into %s%s", ", ".join(names.values()), output,
             f" (replaced {len(moved_old)})" if moved_old else "")
