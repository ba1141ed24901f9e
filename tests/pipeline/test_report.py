"""The HTML report reads as people read it: labels and percentages, wrong answers marked, the distances with the
threshold, the latency against its target, a table per posture."""
from __future__ import annotations

import re

from pipeline.report import distance_histogram, write_report
from pipeline.summary import ScanRecord, summarise


def _rec(i: int, posture: str, g: float, imp: float, identified: str | None, pred: str | None = None,
         latency: float = 40.0) -> ScanRecord:
    thr = 0.3
    return ScanRecord(frame_id=i, subject=f"sim-{i:03d}", posture_true=posture, posture_pred=pred or posture,
                      posture_prob=0.87, genuine_distance=g, genuine_accepted=g <= thr, impostor_claim="sim-099",
                      impostor_distance=imp, impostor_accepted=imp <= thr, identified=identified, latency_ms=latency,
                      inference_ms=2.0, stages_ms={"transfer_to_processing": 20.0, "processing": 15.0,
                                                   "inference": 5.0})


RECORDS = [
    _rec(0, "front-left", 0.05, 0.80, "sim-000"),
    _rec(1, "front-left", 0.10, 0.25, "sim-099"),                     # impostor accepted, identified wrongly
    _rec(2, "full-right", 0.45, 0.90, None, pred="front-right"),      # genuine rejected, posture wrong, unknown
    _rec(3, "full-right", 0.12, 0.70, "sim-003", latency=180.0),
]


def _report(tmp_path, target: float) -> str:
    s = summarise(RECORDS, 0.3)
    s.update(latency_target_ms=target, failures_to_acquire=1)
    return write_report(tmp_path / "r.html", s, RECORDS, {"engine": "onnxruntime", "threshold": 0.3}).read_text()


def test_labels_and_percentages_not_field_names_and_fractions(tmp_path):
    text = _report(tmp_path, 100.0)
    assert "Verification accuracy (genuine accepted + impostors rejected)" in text
    assert "75.0 % (6 of 8)" in text  # 3 of 4 genuine accepted + 3 of 4 impostors rejected
    assert "Posture accuracy</th><td>75.0 % (3 of 4)" in text
    assert "Identified correctly (rank 1, open set)</th><td>50.0 % (2 of 4)" in text
    for raw in ("verification_accuracy", "genuine_accept_rate", "p99_latency_ms", "inference_ms_p50"):
        assert raw not in text
    assert not re.search(r"<td>0\.\d{4}</td>", text)  # no 4-decimal fractions
    assert "verification threshold</th><td>0.300" in text  # the session table speaks too


def test_wrong_identifications_and_decisions_are_marked(tmp_path):
    text = _report(tmp_path, 100.0)
    assert '<td class="bad">sim-099: wrong &#10007;</td>' in text
    assert '<td class="bad">none: rejected as unknown &#10007;</td>' in text
    assert '<td class="ok">sim-000</td>' in text
    assert '<td class="bad">accept (0.250) &#10007;</td>' in text  # the impostor accepted
    assert '<td class="bad">reject (0.450) &#10007;</td>' in text  # the genuine claim rejected
    assert text.count("&#10007;") == 1 + 5  # the legend, then the four above and the posture mistaken


def test_the_distance_histogram_holds_every_claim_and_the_threshold():
    svg = distance_histogram([0.05, 0.10, 0.45, 0.12], [0.80, 0.25, 0.90, 0.70], 0.3)
    counts = {cls: sum(int(c) for c in re.findall(rf'class="{cls}" data-count="(\d+)"', svg))
              for cls in ("genuine", "impostor")}
    assert counts == {"genuine": 4, "impostor": 4}
    assert 'id="threshold"' in svg and "threshold 0.300" in svg
    # the line sits at the threshold on the axis: 0.3 of a 1.0-wide axis (0.90 x 1.1, rounded up to a 0.05 bin)
    x = float(re.search(r'id="threshold" x1="([\d.]+)"', svg).group(1))
    assert abs((x - 40) / 510 - 0.3) < 0.01
    assert "no claims" in distance_histogram([], [], None)


def test_latency_against_its_target(tmp_path):
    text = _report(tmp_path, 100.0)
    p99 = summarise(RECORDS, 0.3)["p99_latency_ms"]
    assert p99 > 100 and f"over the target by {p99 - 100:.1f} ms" in text
    assert "<th>transfer to processing</th><td>20.0 ms</td><td>50 %</td><td>20 %</td>" in text
    assert 'id="latency-bar"' in text and "target 100 ms" in text
    assert "within the target" in _report(tmp_path, 500.0)


def test_one_row_per_posture(tmp_path):
    text = _report(tmp_path, 100.0)
    rows = re.findall(r"<tr><th>(front-left|full-right)</th><td>(\d+)</td><td>([^<]+)</td>", text)
    assert rows == [("front-left", "2", "100.0 % (2 of 2)"), ("full-right", "2", "50.0 % (1 of 2)")]
