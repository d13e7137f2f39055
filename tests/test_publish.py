"""`builder publish` / `builder rollback` on a live `builder serve`, with clients sending the whole time.

Two versions of the intent model (other weights, so other answers) are published, refused and
rolled back while clients call the public ensemble and the public direct model; no request may
fail, and within each step the answers change version at most once, never back and forth.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from builder.build import build
from builder.engine.proof import PROBE_TEXTS
from builder.example.seq_cls_example import ExampleSpec, make_seq_cls_example
from builder.options import BuildOptions
from builder.publish import PublishOptions, publish, rollback
from builder.serving.admin import LiveServer
from builder.serving.triton_server import ServerPorts
from builder.triton.check import accept, check_repository
from builder.triton.config import parse, render
from builder.triton.stores import open_store
from builder.triton.versions import add_version, read_record as read_store_record, startup_models
from builder.verify import verify
from clients.seq_cls import SeqClsClient
from serving_core.errors import UserError
from serving_core.interface import Task
from serving_core.runtime import RuntimeKind

from .test_serve_cli import _serve, _tritonserver_of, _wait_for_serving

pytestmark = pytest.mark.server

KEY = "publish-test-admin-key"
TEXTS = ["打开空调然后播放周杰伦的花心" * 6] * 8  # a large request: it spends a while in each step
OPTIONS = PublishOptions(grace_s=60.0)


@pytest.fixture(scope="module")
def builds(example_model, tmp_path_factory) -> dict[str, Path]:
    """v1 and v2 (retrained: other weights), each a repository of `builder build --direct`."""
    root = tmp_path_factory.mktemp("publish")
    retrained = root / "retrained"
    make_seq_cls_example(retrained, ExampleSpec(train_steps=8), show_progress=False)
    out = {}
    for key, model in (("v1", example_model), ("v2", retrained)):
        out[key] = root / key
        build(model, out[key], BuildOptions(task=Task.SEQ_CLS, name="intent", runtime=RuntimeKind.ONNXRUNTIME,
                                            direct=True), show_progress=False)
    out["other"] = root / "other"  # another team's model, served by the same server
    build(retrained, out["other"], BuildOptions(task=Task.SEQ_CLS, name="other", runtime=RuntimeKind.ONNXRUNTIME),
          show_progress=False)
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory, builds):
    """`builder serve` on a repository that starts empty; v1 published before any client calls."""
    repo = tmp_path_factory.mktemp("live") / "models"
    repo.mkdir()
    ports = ServerPorts.free()
    os.environ["ERNIE_SERVING_ADMIN_KEY"] = KEY
    with _serve(repo, ports, "--probe-interval", "0") as process:
        _wait_for_serving(process)
        server = LiveServer(f"127.0.0.1:{ports.http}", KEY)
        publish(builds["v1"], repo, server, options=OPTIONS)
        yield repo, ports, server, process


def read_record(repo, name: str):
    return read_store_record(open_store(repo), name)


def _signature(probabilities) -> float:
    return round(float(probabilities[0][0]), 5)


class Traffic:
    """Clients calling `intent` and `intent_direct` in loops; every answer's version signature kept in order."""

    def __init__(self, grpc_url: str, clients: int = 3):
        self.seen: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        models = ["intent"] * (clients - 1) + ["intent_direct"]
        self.threads = [threading.Thread(target=self._loop, args=(f"{m}#{i}", grpc_url, m), daemon=True)
                        for i, m in enumerate(models)]
        for thread in self.threads:
            thread.start()

    def _loop(self, who: str, url: str, model: str) -> None:
        client = SeqClsClient(url, model)
        seen = self.seen.setdefault(who, [])
        while not self._stop.is_set():
            self.sent += 1
            try:
                seen.append(_signature(client.probabilities(TEXTS)))
            except Exception as exc:  # noqa: BLE001 - a failed request is the finding
                self.errors.append(f"{who}: {exc}")

    def mark(self) -> dict[str, int]:
        return {who: len(seen) for who, seen in self.seen.items()}

    def since(self, mark: dict[str, int]) -> dict[str, list[float]]:
        return {who: seen[mark.get(who, 0):] for who, seen in self.seen.items()}

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def _changes(sequence: list[float]) -> int:
    return sum(1 for a, b in zip(sequence, sequence[1:]) if a != b)


def _assert_one_switch(answers: dict[str, list[float]], old: float, new: float) -> None:
    """Each client saw `old` then `new`, switching once (none of them saw a third answer)."""
    for who, sequence in answers.items():
        assert set(sequence) <= {old, new}, (who, set(sequence))
        assert _changes(sequence) <= 1 and (not sequence or sequence[-1] == new or old == new), (who, sequence)


def _wait_for_answers(traffic: Traffic, count: int = 2) -> None:
    mark = traffic.mark()
    deadline = time.monotonic() + 120
    while any(n < mark.get(who, 0) + count for who, n in traffic.mark().items()) or not traffic.seen:
        assert time.monotonic() < deadline, "the clients stopped getting answers"
        time.sleep(0.1)


def _answer_at(grpc_url: str, model: str = "intent") -> float:
    return _signature(SeqClsClient(grpc_url, model).probabilities(TEXTS))


def _answer(ports, model: str = "intent") -> float:
    return _answer_at(f"127.0.0.1:{ports.grpc}", model)


def _texts_file(directory: Path) -> Path:
    path = directory / "texts.txt"
    path.write_text("\n".join(PROBE_TEXTS) + "\n", encoding="utf-8")
    return path


def _copy_build(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _unloadable_copy(source: Path, target: Path) -> Path:
    """A copy of a build whose model step asks for a GPU: it passes `builder check` (an edited config
    that holds the schema and the wiring) and cannot load on this machine."""
    _copy_build(source, target)
    config_file = target / "intent_model" / "config.pbtxt"
    config = parse(config_file.read_text())
    config.instance_group[0].kind = config.instance_group[0].KIND_GPU
    config_file.write_text(render(config))
    return target


def test_a_version_is_the_build_renamed_and_recorded_again(builds, tmp_path):
    repo = tmp_path / "models"
    repo.mkdir()
    models = add_version(builds["v2"], "intent", open_store(repo), 7)
    assert models == ["intent_v7", "intent_v7_tokenizer", "intent_v7_model", "intent_v7_postprocess",
                      "intent_v7_direct"]
    ensemble = parse((repo / "intent_v7" / "config.pbtxt").read_text())
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == models[1:4]
    assert parse((repo / "intent_v7_direct" / "config.pbtxt").read_text()).name == "intent_v7_direct"
    record = json.loads((repo / "intent_v7" / "build.json").read_text())
    assert record["spec"]["name"] == "intent_v7" and record["probe"]["texts"] == list(PROBE_TEXTS)
    assert check_repository(repo).ok and check_repository(repo).ensembles == ("intent_v7",)
    assert startup_models(repo) == ("*",)  # nothing published yet: a plain repository


def test_publish_refusals_and_rollback_never_fail_a_request(live, builds, tmp_path):
    repo, ports, server, _ = live
    v1 = _answer(ports)
    assert _answer(ports, "intent_direct") == v1
    publish(builds["other"], repo, server, options=OPTIONS)  # a name the repository does not hold: added
    other = _answer(ports, "other")
    traffic = Traffic(f"127.0.0.1:{ports.grpc}")
    table = []
    try:
        _wait_for_answers(traffic)

        mark = traffic.mark()
        report = publish(builds["v2"], repo, server, options=OPTIONS)
        _wait_for_answers(traffic)
        assert report.live == 2 and report.previous == 1 and report.probe_difference <= 1e-4
        v2 = _answer(ports)
        assert v2 != v1
        _assert_one_switch(traffic.since(mark), v1, v2)
        table.append(("publish v2", traffic.since(mark)))

        def refused(step: str, bad_build: Path, reason: str) -> None:
            mark = traffic.mark()
            with pytest.raises(UserError, match=reason):
                publish(bad_build, repo, server, options=OPTIONS)
            _wait_for_answers(traffic)
            _assert_one_switch(traffic.since(mark), v2, v2)
            table.append((step, traffic.since(mark)))

        unloadable = _unloadable_copy(builds["v2"], tmp_path / "unloadable")
        refused("refused: cannot load", unloadable, "cannot load intent_v3")
        # A version whose model step no longer answers what its build recorded (an edited program, accepted).
        edited = _copy_build(builds["v2"], tmp_path / "edited")
        shutil.copy2(builds["v1"] / "intent_model" / "1" / "model.onnx", edited / "intent_model" / "1" / "model.onnx")
        assert accept(edited)[0].ok
        refused("refused: answers differ", edited, "differs from the source model")
        # A version whose vocabulary was edited after its build (two tokens swapped, accepted): the model
        # step, fed the recorded ids, still agrees; the tokenizer step does not.
        retokenized = _copy_build(builds["v2"], tmp_path / "retokenized")
        vocab = retokenized / "intent_tokenizer" / "1" / "vocab.txt"
        lines = vocab.read_text(encoding="utf-8").splitlines()
        first, second = (lines.index(token) for token in ("空", "调"))
        lines[first], lines[second] = lines[second], lines[first]
        vocab.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assert accept(retokenized)[0].ok
        refused("refused: tokenizes otherwise", retokenized, r"tokenizes 2 of the build's probe texts otherwise")
        assert not [p.name for p in repo.iterdir() if "_v3" in p.name or "_v4" in p.name]
        assert check_repository(repo).ok

        mark = traffic.mark()
        report = rollback(repo, "intent", server, OPTIONS)
        _wait_for_answers(traffic)
        assert (report.live, report.previous) == (1, 2)
        assert _answer(ports) == v1 and _answer(ports, "intent_direct") == v1
        _assert_one_switch(traffic.since(mark), v2, v1)
        table.append(("rollback to v1", traffic.since(mark)))
    finally:
        traffic.stop()
    assert traffic.errors == [], traffic.errors[:5]
    assert _answer(ports, "other") == other  # untouched by intent's publishes
    assert read_record(repo, "intent").live == 1
    assert server.config("intent")["parameters"]["published_version"]["string_value"] == "1"
    assert check_repository(repo).ok
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports.metrics}/metrics", timeout=30).read().decode()
    assert 'model="intent_v1_model"' in metrics and 'model="intent_v2_model"' in metrics  # per version
    names = {v1: "v1", v2: "v2"}
    for step, answers in table:
        print(f"{step}: {sum(map(len, answers.values()))} requests, 0 failed, answered by "
              f"{sorted({names[a] for seq in answers.values() for a in seq})}")


def test_a_killed_publisher_leaves_one_version_serving_and_the_next_publish_completes(live, builds):
    repo, ports, server, _ = live
    before = _answer(ports)
    live_version = read_record(repo, "intent").live
    other = builds["v2"] if live_version == 1 else builds["v1"]
    traffic = Traffic(f"127.0.0.1:{ports.grpc}", clients=2)
    try:
        _wait_for_answers(traffic)
        mark = traffic.mark()
        publisher = subprocess.Popen([sys.executable, "-m", "builder", "publish", str(other), str(repo),
                                      "--url", f"127.0.0.1:{ports.http}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env={**os.environ,
                                                                               "ERNIE_SERVING_ADMIN_KEY": KEY})
        for line in publisher.stdout:  # killed while its version loads beside the live one
            if "beside the live version" in line:
                publisher.send_signal(signal.SIGKILL)
                break
        publisher.wait(timeout=60)
        _wait_for_answers(traffic)
        _assert_one_switch(traffic.since(mark), before, before)
        assert check_repository(repo).ok
        assert read_record(repo, "intent").live == live_version

        report = publish(other, repo, server, options=OPTIONS)  # the lock died with the publisher
        _wait_for_answers(traffic)
        assert report.previous == live_version and _answer(ports) != before
    finally:
        traffic.stop()
    assert traffic.errors == [], traffic.errors[:5]
    on_disk = sorted(p.name for p in repo.iterdir() if p.is_dir() and p.name.startswith("intent_v"))
    assert len({name.split("_")[1] for name in on_disk}) <= OPTIONS.keep, on_disk


def test_two_publishes_at_once_the_second_is_refused(live, builds):
    repo, _, server, _ = live
    with open_store(repo).lock(0):
        with pytest.raises(UserError, match="another publish or rollback is running"):
            publish(builds["v1"], repo, server, options=OPTIONS)


def test_twenty_switches_keep_the_servers_memory_bounded(live, builds):
    repo, ports, server, process = live
    triton = _tritonserver_of(process)

    def tree_mb() -> float:
        """The server's and its stubs' memory, once the unloaded versions' stubs have exited (one
        stub per loaded Python model: every ready model but the ensembles)."""
        stubs = len([m for m, state in server.states().items() if state == "READY" and m not in ("intent", "other")])
        deadline = time.monotonic() + 60
        while len(triton.children(recursive=True)) > stubs and time.monotonic() < deadline:
            time.sleep(0.2)
        processes = [triton, *triton.children(recursive=True)]
        total = 0
        for item in processes:
            with contextlib.suppress(psutil.Error):
                total += item.memory_info().rss
        return total / 2**20

    sizes = []
    for cycle in range(20):
        live_version = read_record(repo, "intent").live
        if cycle % 2:
            rollback(repo, "intent", server, OPTIONS)
        else:
            publish(builds["v2"] if live_version % 2 else builds["v1"], repo, server, options=OPTIONS)
        sizes.append(tree_mb())
    record = read_record(repo, "intent")
    assert len(record.kept) <= OPTIONS.keep
    loaded = {m for m, state in server.states().items() if state == "READY"}
    assert loaded == {"intent", "intent_direct", "other", "other_v1_tokenizer", "other_v1_model",
                      "other_v1_postprocess", *(f"intent_v{record.live}_{s}" for s in
                                                ("tokenizer", "model", "postprocess"))}
    print("server memory after each switch (MB):", [round(s) for s in sizes])
    assert max(sizes[10:]) <= 1.15 * max(sizes[:4]), sizes


def test_publish_needs_the_admin_key(builds, tmp_path, monkeypatch):
    from builder.cli import main

    monkeypatch.delenv("ERNIE_SERVING_ADMIN_KEY", raising=False)
    assert main(["publish", str(builds["v1"]), str(tmp_path)]) == 2
    assert main(["rollback", str(tmp_path), "--name", "intent"]) == 2


def test_publish_output_is_one_json_line(live, builds, capsys):
    """The CLI prints the report (scripts read it)."""
    from builder.cli import main

    repo, ports, _, _ = live
    live_version = read_record(repo, "intent").live
    os.environ["ERNIE_SERVING_ADMIN_KEY"] = KEY
    code = main(["publish", str(builds["v1"]), str(repo), "--url", f"127.0.0.1:{ports.http}"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["previous"] == live_version and report["live"] > live_version


def test_a_restart_serves_the_live_version_only(live, builds, tmp_path):
    repo, ports, server, process = live
    expected = _answer(ports)
    record = read_record(repo, "intent")
    # SIGTERM, as docker and Kubernetes stop it (a shell that starts a job in the background, as CI
    # may, makes it ignore SIGINT).
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"builder serve did not stop on SIGTERM:\n{output[-4000:]}") from None
    assert process.returncode == 0, output[-4000:]
    assert set(startup_models(repo)) == {"intent", "intent_direct", "other"}
    again = ServerPorts.free()
    with _serve(repo, again, "--probe-interval", "0") as restarted:
        _wait_for_serving(restarted)
        assert _answer(again) == expected and _answer(again, "intent_direct") == expected
        report = verify(repo, "intent", f"127.0.0.1:{again.grpc}", [(t,) for t in PROBE_TEXTS])  # the live build
        assert report.passed, report.to_json()
        states = LiveServer(f"127.0.0.1:{again.http}", KEY).states()
        ready = {m for m, state in states.items() if state == "READY"}
        assert ready == {"intent", "intent_direct", "other", "other_v1_tokenizer", "other_v1_model",
                         "other_v1_postprocess", *(f"intent_v{record.live}_{s}" for s in
                                                   ("tokenizer", "model", "postprocess"))}


def test_on_an_s3_repository_publish_refusal_kill_rollback_and_restart(builds, tmp_path):
    """The same steps on s3:// (a local S3 server), the server reading the repository itself."""
    from builder.serving.triton_server import TritonServer

    from .local_s3 import local_s3

    with local_s3() as bucket:
        url = f"{bucket}/models"
        store = open_store(url)
        # Triton needs the repository to exist at start: another team's model is already there.
        store.write_text("README", "published models\n")
        with TritonServer(url, ServerPorts.free(), admin_key=KEY, load_models=startup_models(url)) as triton:
            server = LiveServer(triton.http_url, KEY)
            publish(builds["v1"], url, server, options=OPTIONS)
            v1 = _answer_at(triton.grpc_url)
            traffic = Traffic(triton.grpc_url, clients=2)
            try:
                _wait_for_answers(traffic)
                mark = traffic.mark()
                publish(builds["v2"], url, server, options=OPTIONS)
                _wait_for_answers(traffic)
                v2 = _answer_at(triton.grpc_url)
                assert v2 != v1
                _assert_one_switch(traffic.since(mark), v1, v2)

                with pytest.raises(UserError, match="cannot load intent_v3"):
                    publish(_unloadable_copy(builds["v1"], tmp_path / "unloadable"), url, server, options=OPTIONS)

                publisher = subprocess.Popen([sys.executable, "-m", "builder", "publish", str(builds["v1"]), url,
                                              "--url", triton.http_url], stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True,
                                             env={**os.environ, "ERNIE_SERVING_ADMIN_KEY": KEY})
                for line in publisher.stdout:
                    if "beside the live version" in line:
                        publisher.send_signal(signal.SIGKILL)
                        break
                publisher.wait(timeout=60)
                assert store.read_text(".publish.lock"), "the killed publisher's lock is left in the bucket"
                assert store.check().ok

                mark = traffic.mark()
                report = rollback(url, "intent", server, OPTIONS)  # takes over the dead publisher's lock
                _wait_for_answers(traffic)
                assert (report.live, report.previous) == (1, 2)
                _assert_one_switch(traffic.since(mark), v2, v1)
            finally:
                traffic.stop()
            assert traffic.errors == [], traffic.errors[:5]
            assert store.read_text(".publish.lock") is None
            assert read_store_record(store, "intent").live == 1
        with TritonServer(url, ServerPorts.free(), admin_key=KEY, load_models=startup_models(url)) as restarted:
            assert _answer_at(restarted.grpc_url) == v1
            assert _answer_at(restarted.grpc_url, "intent_direct") == v1
            from builder.cli import main

            assert main(["verify", url, "--name", "intent", "--url", restarted.grpc_url, "--texts",
                         str(_texts_file(tmp_path))]) == 0  # the live version's build, read from S3
