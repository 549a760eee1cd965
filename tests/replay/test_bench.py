"""The replay benchmark runs: it writes a small session, replays it exactly, and reports a rate."""

from __future__ import annotations

from replay.bench import replay_rate


def test_the_replay_benchmark_replays_a_small_session_and_reports_a_rate(tmp_path):
    """Two markets for a minute of event time: records counted, a positive rate, and the same log each time."""
    result = replay_rate(markets=2, duration_s=60, directory=tmp_path / "a")
    again = replay_rate(markets=2, duration_s=60, directory=tmp_path / "b")
    assert result.records == again.records > 100 and result.rate > 0 and result.seconds > 0
    a = sorted(p.read_bytes() for p in (tmp_path / "a" / "bench").glob("*.seg"))
    b = sorted(p.read_bytes() for p in (tmp_path / "b" / "bench").glob("*.seg"))
    assert a == b
