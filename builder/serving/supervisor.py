"""Keeps a running tritonserver answering: probe by inference, reload a dead step.

Triton 2.51's Python backend never restarts a stub that crashed or was killed: the model
answers "Stub process ... is not healthy" forever while the server's health endpoints stay
ready. The server runs in explicit model-control mode, so unloading and loading the step
starts a new stub (about 3 s for a model step here).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from serving_core.health import probe, ready_ensembles

from builder.serving.triton_server import TritonServer
from serving_core.errors import ServerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisorOptions:
    interval_s: float = 5.0  # between probes
    probe_timeout_s: float = 60.0  # a busy server may take long; a timeout alone is not a dead step
    attempts: int = 3  # reloads of one ensemble in a row before giving up


class Supervisor:
    """watch(): probe every ensemble each interval; reload the steps of one that fails."""

    def __init__(self, server: TritonServer, options: SupervisorOptions = SupervisorOptions()):
        self.server = server
        self.options = options
        self.recoveries = 0
        self._base = f"http://{server.http_url}"
        self._failures: dict[str, int] = {}
        self._known: set[str] = set()

    def check(self) -> dict[str, str | None]:
        """Probe once and recover what failed; returns the probe's results."""
        results = probe(self._base, self.server.admin_http_headers, self.options.probe_timeout_s,
                        sorted(self._known) or None)
        self._known.update(results)  # an ensemble that stops being ready is probed (and fails) too
        for name, error in results.items():
            if error is None:
                self._failures.pop(name, None)
            elif "timed out" not in error:
                self.recover(name, error)
        return results

    def recover(self, ensemble: str, error: str) -> None:
        """Unload and load the ensemble's steps named in `error` (all its steps if none is)."""
        count = self._failures[ensemble] = self._failures.get(ensemble, 0) + 1
        if count > self.options.attempts:
            raise ServerError(f"ensemble {ensemble!r} still fails after {self.options.attempts} reloads: {error}")
        steps = self._steps(ensemble)
        named = [step for step in steps if f"'{step}_" in error or f"'{step}'" in error]
        targets = named or steps
        log.warning("ensemble %s failed its probe (%s); reloading %s", ensemble, error, ", ".join(targets))
        started = time.monotonic()
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.server.grpc_url)
        try:
            for step in targets:
                client.unload_model(step, headers=self.server.admin_headers)
                client.load_model(step, headers=self.server.admin_headers)
        except Exception as exc:  # tritonclient's InferenceServerException: counted, tried again next round
            log.error("reloading %s failed: %s", ", ".join(targets), exc)
            return
        after = probe(self._base, self.server.admin_http_headers, self.options.probe_timeout_s, [ensemble])
        self.recoveries += 1
        if after[ensemble] is None:
            self._failures.pop(ensemble, None)
            log.warning("ensemble %s answers again (reloaded in %.1f s)", ensemble, time.monotonic() - started)
        else:
            log.error("ensemble %s still fails after the reload: %s", ensemble, after[ensemble])

    def _steps(self, ensemble: str) -> list[str]:
        config = ready_ensembles(self._base, self.server.admin_http_headers).get(ensemble, {})
        return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]

    def watch(self, stop=lambda: False) -> None:
        """Until `stop()` is true: probe, recover; raises ServerError when the server exits or a
        step cannot be brought back."""
        while not stop():
            if not self.server.is_running():
                raise ServerError(f"tritonserver exited (code {self.server.returncode}); log "
                                  f"({self.server.log_file}):\n{self.server.log_tail()}")
            try:
                self.check()
            except (OSError, RuntimeError) as exc:
                if isinstance(exc, ServerError):
                    raise
                log.warning("probe could not run: %s", exc)
            deadline = time.monotonic() + self.options.interval_s
            while time.monotonic() < deadline and not stop() and self.server.is_running():
                time.sleep(0.2)
