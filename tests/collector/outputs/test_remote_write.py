"""Remote-write bodies (collector/outputs/series.py, remote_write.py): samples and their noise companions,
the hand-written WriteRequest encoding against its decoder and snappy, label hygiene."""

from __future__ import annotations

import math

import cramjam
from hypothesis import given
from hypothesis import strategies as st

from collector.outputs.remote_write import compress, decode_write_request, encode_write_request
from collector.outputs.series import COMPANIONS, VALUE, Sample, batch_samples, label_name, samples
from collector.report.intervals import LN20, Z95
from collector.store.records import BatchPrivacy, StoredRow


def _row(value: float = 10.0, mechanism: str = "gaussian", scale: float = 2.0, **dims: str) -> StoredRow:
    return StoredRow(
        "acme", "a1", 1, "2026-03-10T11:59:00Z", "2026-03-10T12:00:00Z", "checkout", "count",
        dims or {"region": "eu"}, value, mechanism, scale,
    )  # fmt: skip


def test_each_row_gives_the_value_and_its_noise_at_the_window_end() -> None:
    got = {s.name: s for s in samples([_row()])}
    assert set(got) == {VALUE, *COMPANIONS}
    end = 1773144000000
    assert {s.timestamp_ms for s in got.values()} == {end}
    assert got[VALUE].value == 10.0
    assert got["hush_released_noise_std"].value == 2.0
    assert math.isclose(got["hush_released_ci95_lower"].value, 10.0 - Z95 * 2.0)
    assert math.isclose(got["hush_released_ci95_upper"].value, 10.0 + Z95 * 2.0)
    labels = dict(got[VALUE].labels)
    assert labels == {
        "__name__": VALUE, "tenant": "acme", "agent": "a1", "metric": "checkout", "stat": "count",
        "dim_region": "eu",
    }  # fmt: skip


def test_laplace_rows_use_the_exact_laplace_interval() -> None:
    got = {s.name: s.value for s in samples([_row(mechanism="laplace", scale=3.0)])}
    assert math.isclose(got["hush_released_noise_std"], 3.0 * math.sqrt(2))
    assert math.isclose(got["hush_released_ci95_upper"], 10.0 + 3.0 * LN20)


def test_dimension_keys_cannot_shadow_reserved_labels() -> None:
    got = samples([_row(**{"tenant": "evil", "http.route": "/x", "__name__": "n"})])
    labels = dict(got[0].labels)
    assert labels["tenant"] == "acme"
    assert labels["dim_tenant"] == "evil"
    assert labels["dim_http_route"] == "/x"
    assert labels["__name__"] in {VALUE, *COMPANIONS}
    assert label_name("a-b.c") == "dim_a_b_c"


def test_batches_add_rows_and_declared_privacy_but_no_undeclared_spend() -> None:
    b = BatchPrivacy(
        "acme", "a1", 7, "2026-03-10T11:59:00Z", "2026-03-10T12:00:00Z", "user", None, None, 0.01
    )
    got = {s.name: (dict(s.labels), s.value, s.timestamp_ms) for s in batch_samples([b], [3])}
    assert set(got) == {"hush_batch_rows", "hush_batch_rho"}  # epsilon was not declared: no sample
    labels, rho, end = got["hush_batch_rho"]
    assert (rho, end) == (0.01, 1773144000000)
    assert labels == {"__name__": "hush_batch_rho", "tenant": "acme", "agent": "a1", "unit": "user"}
    assert got["hush_batch_rows"][1] == 3.0


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_sample = st.builds(
    Sample,
    st.tuples(st.tuples(st.just("__name__"), _text), st.tuples(st.just("x"), _text)),
    st.floats(allow_nan=False),
    st.integers(-(2**62), 2**62),
    st.just(0),
)


@given(st.lists(_sample, max_size=20))
def test_write_request_round_trips(items: list[Sample]) -> None:
    body = encode_write_request(items)
    decoded = decode_write_request(bytes(cramjam.snappy.decompress_raw(compress(body))))
    got = sorted((tuple(sorted(labels.items())), v, t) for labels, points in decoded for v, t in points)
    want = sorted((tuple(sorted(s.labels)), s.value, s.timestamp_ms) for s in items)
    assert got == want
    # one TimeSeries per label set, its samples in time order (Prometheus refuses out-of-order ones)
    assert len(decoded) == len({s.labels for s in items})
    for _, points in decoded:
        assert [t for _, t in points] == sorted(t for _, t in points)


def test_a_period_total_is_its_own_series_and_its_batch_adds_to_the_last_windows() -> None:
    """A period total ends with the period's last window (issue 15): it must not become a second
    sample of that window's series, and the two batches' usage samples add up instead of clashing."""
    from collector.outputs.series import batch_samples, samples
    from collector.store.records import BatchPrivacy, StoredRow

    window = StoredRow("acme", "e1", 4, "2026-01-05T18:00:00Z", "2026-01-06T00:00:00Z", "signup", "count",
                       {}, 10.0, "gaussian", 2.0)  # fmt: skip
    total = StoredRow("acme", "e1", 5, "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z", "signup", "count",
                      {}, 41.0, "gaussian", 3.0, "period")  # fmt: skip
    out = samples([window, total])
    keys = {(s.labels, s.timestamp_ms) for s in out}
    assert len(keys) == len(out) == 8
    assert {dict(s.labels).get("level") for s in out} == {None, "period"}
    batches = [
        BatchPrivacy(
            "acme", "e1", 4, "2026-01-05T18:00:00Z", "2026-01-06T00:00:00Z", "user", None, None, 0.5
        ),
        BatchPrivacy(
            "acme", "e1", 5, "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z", "user", None, None, 0.0
        ),
    ]
    usage = {dict(s.labels)["__name__"]: s.value for s in batch_samples(batches, [3, 1])}
    assert usage == {"hush_batch_rows": 4.0, "hush_batch_rho": 0.5}
