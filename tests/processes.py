"""Processes a test looks for among a server's descendants."""
from __future__ import annotations


def descendants_running(pid: int, *markers: str) -> list:
    """The descendants of process `pid` whose command line holds every one of `markers` (e.g. a
    model's backend stubs). One that exits or turns zombie while they are listed is left out,
    not raised."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            if all(marker in command for marker in markers):
                found.append(child)
        except psutil.Error:
            continue
    return found
