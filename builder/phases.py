"""Where a build's time and memory go: one record per phase, logged and kept in build.json.

Memory is resident memory (RSS) as Linux counts it. Each phase starts by handing back what the
phases before let go (`release_memory`); the build process's RSS is read every SAMPLE_S while a
build runs, and a phase records the most it saw. A child process the build runs (the ONNX
conversion, the program probe) is measured by `ChildProcess`, which reads its peak from the
kernel's accounting when it exits; the phase records the largest, and `peak_mb` the larger of the
build's own and the build's own while a child ran plus that child's (shared library pages count
in both: a bound, not an exact sum). `/usr/bin/time -v` reports the larger of the two alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseCost:
    """One phase: wall seconds, the build process's peak, the largest child's, their sum's bound."""

    name: str
    seconds: float
    process_mb: int  # the build process's own peak RSS during the phase
    child_mb: int = 0  # the largest child process's peak RSS (0: no child ran)
    peak_mb: int = 0  # at most process_mb + child_mb: what the machine needed at once

    def describe(self) -> str:
        child = f" (a child process {self.child_mb} MB)" if self.child_mb else ""
        return f"{self.name}: {self.seconds:.1f} s, peak {self.peak_mb} MB{child}"


def _status_kb(field_name: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb() -> float:
    """This process's resident memory now."""
    return _status_kb("VmRSS") / 1024


def release_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc keeps what engines freed: 1.1 GB after
    Paddle's oneDNN predictor on ERNIE 3.0 Medium, until this). No garbage collection: engines go
    with their last reference, and a full collection takes 0.5 s in a process with PaddleNLP."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


SAMPLE_S = 0.05


class _RssSampler:
    """The most RSS (kB) this process had since `restart()`, read every SAMPLE_S by a thread."""

    def __init__(self):
        self.peak_kb = _status_kb("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def restart(self) -> None:
        self.peak_kb = _status_kb("VmRSS")

    def read(self) -> int:
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
        return self.peak_kb

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


_CHILD_PEAKS = threading.local()  # the peaks (kB) of the children run in the current phase, per thread


def _note_child(peak_kb: int, parent_kb: int) -> None:
    peaks = getattr(_CHILD_PEAKS, "peaks", None)
    if peaks is not None:
        peaks.append((peak_kb, parent_kb))


_ACTIVE: list["PhaseClock"] = []  # the clock of the build running in this process, if any


def phase(name: str):
    """`with phase(name):` records the phase on the running build's clock; nothing without one."""
    return _ACTIVE[-1].phase(name) if _ACTIVE else contextlib.nullcontext()


@dataclass
class PhaseClock:
    """Times and measures phases: `with clock.phase("export"): ...`; phases of the same name add up."""

    phases: list[PhaseCost] = field(default_factory=list)
    _open: bool = False  # a phase inside a phase is part of the outer one
    _sampler: _RssSampler | None = None

    @contextlib.contextmanager
    def running(self):
        """Make this the clock `phase()` records on."""
        _ACTIVE.append(self)
        self._sampler = _RssSampler()
        try:
            yield self
        finally:
            self._sampler.stop()
            _ACTIVE.remove(self)

    @contextlib.contextmanager
    def phase(self, name: str):
        if self._open:
            yield
            return
        self._open = True
        release_memory()  # what the phase before let go
        sampler = self._sampler or _RssSampler()
        sampler.restart()
        _CHILD_PEAKS.peaks = []
        started = time.perf_counter()
        try:
            yield
        finally:
            self._open = False
            seconds = time.perf_counter() - started
            own = sampler.read()
            if sampler is not self._sampler:
                sampler.stop()
            children = _CHILD_PEAKS.peaks
            _CHILD_PEAKS.peaks = None
            child = max((kb for kb, _ in children), default=0)
            together = max([own] + [kb + parent for kb, parent in children])
            self._add(PhaseCost(name, seconds, own // 1024, child // 1024, together // 1024))

    def _add(self, cost: PhaseCost) -> None:
        for index, earlier in enumerate(self.phases):
            if earlier.name == cost.name:
                self.phases[index] = PhaseCost(cost.name, earlier.seconds + cost.seconds,
                                               max(earlier.process_mb, cost.process_mb),
                                               max(earlier.child_mb, cost.child_mb),
                                               max(earlier.peak_mb, cost.peak_mb))
                break
        else:
            self.phases.append(cost)
        log.info("phase %s", cost.describe())

    @property
    def peak_mb(self) -> int:
        return max((p.peak_mb for p in self.phases), default=0)

    def to_json(self) -> dict:
        return {"peak_mb": self.peak_mb, "process_peak_mb": _status_kb("VmHWM") // 1024,
                "seconds": round(sum(p.seconds for p in self.phases), 2),
                "phases": [{**asdict(p), "seconds": round(p.seconds, 2)} for p in self.phases]}

    def table(self) -> str:
        """The phases as aligned lines, for the build's summary."""
        width = max((len(p.name) for p in self.phases), default=0)
        return "\n".join(f"  {p.name:<{width}}  {p.seconds:6.1f} s  {p.peak_mb:6d} MB"
                         + (f"  (child {p.child_mb} MB)" if p.child_mb else "") for p in self.phases)


class ChildProcess:
    """A child process whose output and peak RSS `finish` collects; started ahead of its input
    (on stdin), so that its imports overlap the build's own work."""

    def __init__(self, command: list[str]):
        self.command = command
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self._parent_kb = _status_kb("VmRSS")
        self._process = subprocess.Popen(command, stdout=self._out, stderr=self._err, stdin=subprocess.PIPE)

    def finish(self, text: str | None, timeout: float) -> subprocess.CompletedProcess:
        """Send `text` (None: nothing) on stdin, close it and wait. Raises subprocess.TimeoutExpired
        after killing a child that runs past `timeout`."""
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            self._process.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            try:
                if text is not None:
                    self._process.stdin.write(text.encode("utf-8"))
                self._process.stdin.close()
            except BrokenPipeError:  # it exited already: its status says why
                pass
            _, status, usage = os.wait4(self._process.pid, 0)
        except BaseException:  # Ctrl-C: the child goes with the build
            self.kill()
            raise
        finally:
            timer.cancel()
        self._process.returncode = os.waitstatus_to_exitcode(status)
        _note_child(int(usage.ru_maxrss), max(self._parent_kb, _status_kb("VmRSS")))
        stdout, stderr = self._read(self._out), self._read(self._err)
        if killed.is_set():
            raise subprocess.TimeoutExpired(self.command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(self.command, self._process.returncode, stdout, stderr)

    def kill(self) -> None:
        """Stop a child whose input will not come (or that must not finish)."""
        if self._process.returncode is None:
            self._process.kill()
            self._process.wait()
        self._out.close()
        self._err.close()

    @staticmethod
    def _read(file) -> str:
        file.seek(0)
        text = file.read().decode("utf-8", "replace")
        file.close()
        return text


def run_child(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True, timeout=timeout)` that also
    measures the child's peak RSS for the current phase."""
    return ChildProcess(command).finish(None, timeout)
