"""The benchmark's arithmetic and documents (no server): held ratios, median rounds, perf_analyzer input."""
from __future__ import annotations

import pytest

from benchmarks.perf_analyzer import input_data
from benchmarks.report import Report, Row, evaluate_targets, held_ratio
from benchmarks.run import median_round


def _row(system: str, texts_per_s: float, client: float = 0.0, concurrency: int = 16) -> Row:
    kind, runtime = system.split("_", 1)
    return Row("seq_cls_short", system, kind, runtime, concurrency,
               {"texts_per_s": texts_per_s, "client_cpu_cores": client, "p50_ms": 1.0})


def test_held_ratio_gives_the_load_generator_its_share():
    assert held_ratio(90.0, 100.0, 0.0, 2) == pytest.approx(0.9)
    assert held_ratio(90.0, 100.0, 0.2, 2) == pytest.approx(1.0)  # 10% of the machine went to the client


def test_fill_ratios_sets_plain_and_held_ratios_and_perf_analyzers():
    report = Report(settings={}, machine={"cpus": 2}, workloads={"seq_cls_short": ""},
                    rows=[_row("bare_paddle", 200.0), _row("triton_paddle", 150.0, client=0.1)])
    report.rows[1].perf_analyzer = {"texts_per_s": 170.0, "client_cpu_cores": 0.02}
    report.fill_ratios()
    served = report.rows[1]
    assert served.ratio_to_bare == pytest.approx(0.75)
    assert served.held_ratio == pytest.approx(150.0 / (200.0 * 0.95))
    assert served.perf_analyzer["held_ratio"] == pytest.approx(170.0 / (200.0 * 0.99))


def test_the_int8_target_names_the_best_build_by_each_load_generator():
    report = Report(settings={}, machine={"cpus": 2}, workloads={"seq_cls_short": ""},
                    rows=[_row("bare_paddle", 100.0), _row("triton_qat", 290.0), _row("direct_qat", 280.0)])
    report.rows[1].perf_analyzer = {"texts_per_s": 300.0, "client_cpu_cores": 0.05}
    report.rows[2].perf_analyzer = {"texts_per_s": 350.0, "client_cpu_cores": 0.05}
    report.fill_ratios()
    target = next(t for t in evaluate_targets(report) if t["target"].startswith("best INT8"))
    assert target["value"] == pytest.approx(2.9) and not target["passed"]  # ours decides the row
    assert "290.0 (triton_qat)" in target["detail"]
    assert target["detail"].endswith("perf_analyzer 350.0/s (direct_qat) = 3.50")


def test_the_floor_gives_the_best_ratio_a_server_that_adds_it_can_show():
    """floor_*: the direct model with an instant engine. One request: (bare + floor) / bare. At
    c16: engine and server CPU-seconds per text, E / (E + S). The floor row has no ratio itself."""
    def point(system, concurrency, texts_per_s, p50_ms, cores):
        row = _row(system, texts_per_s, concurrency=concurrency)
        row.measurement.update(p50_ms=p50_ms, cpu_cores=cores)
        return row

    report = Report(settings={}, machine={"cpus": 2}, workloads={"seq_cls_short": ""}, rows=[
        point("bare_int8", 1, 500.0, 2.0, 2.0), point("direct_int8", 1, 200.0, 4.0, 1.5),
        point("floor_int8", 1, 800.0, 1.0, 0.8),
        point("bare_int8", 16, 1000.0, 16.0, 2.0), point("direct_int8", 16, 500.0, 30.0, 1.8),
        point("floor_int8", 16, 2000.0, 8.0, 1.0)])
    report.rows[2].perf_analyzer = {"texts_per_s": 900.0, "p50_ms": 0.5, "client_cpu_cores": 0.02}
    report.fill_ratios()
    assert report.rows[2].ratio_to_bare == 0.0 and "held_ratio" not in report.rows[2].perf_analyzer
    targets = {t["target"]: t for t in evaluate_targets(report)}
    c1 = targets["one 16-token request p50 / bare (direct_int8)"]
    assert c1["value"] == pytest.approx(2.0)
    assert c1["detail"].endswith("floor_int8 1.00 ms, so at best 1.50 (perf_analyzer 1.25)")
    c16 = targets["served/bare at c16, load generator's share left out (direct_int8, seq_cls_short)"]
    # E = 2 cores / 1000 texts/s = 2 ms, S = 1 core / 2000 texts/s = 0.5 ms: at most 2 / 2.5.
    assert c16["detail"].endswith("floor_int8 0.50 CPU-ms a text, so at most 0.80")


def test_the_median_round_is_reported_with_every_round_beside_it():
    rows = [_row("triton_paddle", value) for value in (120.0, 180.0, 150.0)]
    median = median_round(rows)
    assert median.measurement["texts_per_s"] == 150.0
    assert median.round_texts_per_s == [120.0, 180.0, 150.0]


def test_perf_analyzer_input_data_is_one_entry_per_request_with_each_input_as_rows_by_one():
    document = input_data([[("q1", "c1"), ("q2", "c2")], [("q3", "c3")]], ["QUESTION", "CONTEXT"])
    assert document == {"data": [
        {"QUESTION": {"content": ["q1", "q2"], "shape": [2, 1]}, "CONTEXT": {"content": ["c1", "c2"], "shape": [2, 1]}},
        {"QUESTION": {"content": ["q3"], "shape": [1, 1]}, "CONTEXT": {"content": ["c3"], "shape": [1, 1]}},
    ]}


def test_engine_shapes_are_texts_by_tokens():
    import argparse

    from benchmarks.workloads import parse_shape

    label, (count, text) = parse_shape("8x16")
    assert label == "8 x 16" and count == 8 and len(text) == 14  # + [CLS] and [SEP]: 16 tokens of CJK
    assert len(parse_shape("2x128")[1][1]) == 126
    for bad in ("8", "x16", "0x16", "8x2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shape(bad)


@pytest.mark.parametrize("vocabulary", [("播", "放"), ("播放", "taylor", "swift", "22", "##22")])
def test_fixed_length_workloads_are_their_stated_length_on_any_vocabulary(vocabulary):
    """A request of seq_cls_short is 16 tokens whatever the model's vocabulary (one token per CJK
    character): with digits or Latin words, word pieces made their lengths differ by vocabulary."""
    from benchmarks.workloads import standard_workloads
    from serving_core.tokenization import ErnieTokenizer, TokenizerSettings

    settings = TokenizerSettings(max_seq_len=512)
    words = (*settings.special_tokens, "，", *vocabulary)
    tokenizer = ErnieTokenizer({word: index for index, word in enumerate(words)}, settings)
    for workload in standard_workloads(requests=16).values():
        if workload.tokens_per_text:
            lengths = tokenizer.encode([row[0] for row in workload.rows]).lengths
            assert set(lengths.tolist()) == {workload.tokens_per_text}, workload.name
