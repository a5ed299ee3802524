"""Timestamps in milliseconds (issue 43, case 6): told from seconds by their magnitude, converted to unix seconds,
a mix refused with the lines named, ``--time_unit`` to force one unit, and the unit read said in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_convert import read_table, steps, write_lines

from recbole_msl.convert import convert, format_report
from recbole_msl.convert.cli import main
from recbole_msl.errors import ConfigError

DAY = 86_400
T0 = 1_577_836_800  # 2020-01-01 00:00:00 UTC


def _generic(tmp_path, times, header="user_id,item_id,timestamp", users=None):
    """A generic CSV with one row per time (user u, items i0, i1, ...) and a title for every item."""
    users = users or ["u"] * len(times)
    inter = write_lines(tmp_path / "i.csv", [header] + [f"{u},i{k},{t}" for k, (u, t) in enumerate(zip(users, times))])
    items = write_lines(tmp_path / "t.csv", ["item_id,title"] + [f"i{k},Title {k}" for k in range(len(times))])
    return {"interactions": inter, "items": items}


def _times(report):
    return [row[2] for row in read_table(report.files["inter"])[1]]


def test_generic_milliseconds_are_written_as_seconds_and_reported(tmp_path):
    report = convert("generic", str(tmp_path / "out"), "g",
                     **_generic(tmp_path, [(T0 + DAY) * 1000 + 999, T0 * 1000 + 5]))
    assert _times(report) == [str(T0), str(T0 + DAY)]
    assert report.time_unit.startswith("milliseconds")
    assert "timestamps: milliseconds (every value >= 1e11), written as unix seconds" in format_report(report)
    with open(report.files["report"], encoding="utf-8") as f:
        assert json.load(f)["time_unit"].startswith("milliseconds")


def test_seconds_are_reported_as_seconds(tmp_path):
    report = convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, [T0, T0 + DAY]))
    assert _times(report) == [str(T0), str(T0 + DAY)]
    assert "timestamps: seconds (every value < 1e11)" in format_report(report)


def test_a_start_date_filters_millisecond_times(tmp_path):
    """Read as seconds, every millisecond value lay after any --start date: the filter kept everything."""
    times = [(T0 - 10 * DAY) * 1000, (T0 + DAY) * 1000, (T0 + 2 * DAY) * 1000]
    report = convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, times), start="2020-01-01")
    assert steps(report)[1] == ("time window", 1, 2, 2)
    assert _times(report) == [str(T0 + DAY), str(T0 + 2 * DAY)]


def test_a_mix_of_milliseconds_and_seconds_is_refused_with_the_lines(tmp_path):
    """Read as they are, the second rows (seconds) sorted first and reordered each user's sequence silently."""
    times = [T0 * 1000, (T0 + DAY) * 1000, T0 + 2 * DAY, (T0 + 3 * DAY) * 1000, T0 + 4 * DAY]
    with pytest.raises(ConfigError) as info:
        convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, times))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'i.csv'}: 'timestamp' mixes milliseconds and seconds: 3 of 5 values"), \
        message
    assert "(lines 2, 3, 5)" in message and "(lines 4, 6)" in message  # line 1 is the header
    assert "--time_unit=ms or --time_unit=s" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("unit, written", [
    ("ms", [(T0 + DAY) // 1000, T0]),  # every number divided, the seconds row too
    ("s", [T0 + DAY, T0 * 1000]),  # every number as given: the seconds row sorts first
])
def test_time_unit_forces_one_unit(tmp_path, unit, written):
    report = convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, [T0 * 1000, T0 + DAY]),
                     time_unit=unit)
    assert _times(report) == [str(w) for w in written]  # in time order
    assert report.time_unit.startswith({"ms": "milliseconds (--time_unit=ms)", "s": "seconds (--time_unit=s)"}[unit])


def test_iso_dates_are_never_divided(tmp_path):
    times = ["2020-01-02", T0 * 1000]
    report = convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, times))
    assert _times(report) == [str(T0), str(T0 + DAY)]
    assert report.time_unit == "milliseconds (every value >= 1e11) and ISO dates, written as unix seconds"
    report = convert("generic", str(tmp_path / "out2"), "g", **_generic(tmp_path, times), time_unit="ms")
    assert _times(report) == [str(T0), str(T0 + DAY)]


def test_microseconds_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"i\.csv line 3: 'when' 1577836800000000 is too large for unix seconds "
                                          r"or milliseconds .*--time_unit=s"):
        convert("generic", str(tmp_path / "out"), "g", time_col="when",
                **_generic(tmp_path, [T0, T0 * 1_000_000], header="user_id,item_id,when"))


def test_amazon2018_in_milliseconds(tmp_path):
    reviews = write_lines(tmp_path / "Books.json", [json.dumps({"reviewerID": "R", "asin": a, "overall": 5,
                                                                "unixReviewTime": t * 1000})
                                                    for a, t in (("A", T0 + DAY), ("B", T0))])
    meta = write_lines(tmp_path / "meta_Books.json", [json.dumps({"asin": a, "title": a}) for a in "AB"])
    report = convert("amazon2018", str(tmp_path / "out"), "b", reviews=reviews, meta=meta, start="2020-01-02")
    assert read_table(report.files["inter"])[1] == [["R", "A", str(T0 + DAY)]]
    assert report.time_unit.startswith("milliseconds")


def test_amazon2023_in_seconds_is_not_divided(tmp_path):
    """The 2023 release gives milliseconds; a copy in seconds was divided by 1000 into January 1970."""
    reviews = write_lines(tmp_path / "Books.jsonl", [json.dumps({"user_id": "U", "parent_asin": "P", "rating": 5,
                                                                 "timestamp": T0})])
    meta = write_lines(tmp_path / "meta_Books.jsonl", [json.dumps({"parent_asin": "P", "title": "T"})])
    report = convert("amazon2023", str(tmp_path / "out"), "b", reviews=reviews, meta=meta)
    assert read_table(report.files["inter"])[1] == [["U", "P", str(T0)]]
    assert report.time_unit.startswith("seconds")


def test_amazon_mix_names_the_lines_past_blank_ones(tmp_path):
    def line(t):
        return json.dumps({"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": t})

    reviews = write_lines(tmp_path / "Books.jsonl", [line(T0 * 1000), "", "", line(T0 * 1000 + 1), line(T0)])
    meta = write_lines(tmp_path / "meta_Books.jsonl", [json.dumps({"parent_asin": "P", "title": "T"})])
    with pytest.raises(ConfigError) as info:
        convert("amazon2023", str(tmp_path / "out"), "b", reviews=reviews, meta=meta)
    assert "2 of 3 values are >= 1e11, so milliseconds (lines 1, 4), and 1 are below, so seconds (lines 5)" \
        in str(info.value)


def test_amazon2014_in_milliseconds(tmp_path):
    ratings = write_lines(tmp_path / "ratings_Books.csv", [f"R,A,5.0,{T0 * 1000}", f"R,B,4.0,{(T0 + 1) * 1000}"])
    meta = write_lines(tmp_path / "meta_Books.json", [repr({"asin": a, "title": a}) for a in "AB"])
    report = convert("amazon2014", str(tmp_path / "out"), "b", ratings=ratings, meta=meta)
    assert _times(report) == [str(T0), str(T0 + 1)]


def test_non_finite_review_times_are_refused(tmp_path):
    reviews = write_lines(tmp_path / "Books.json", [('{"reviewerID": "R", "asin": "A", "overall": 5, '
                                                     '"unixReviewTime": 1252800000}'),
                                                    ('{"reviewerID": "R", "asin": "B", "overall": 5, '
                                                     '"unixReviewTime": NaN}')])
    meta = write_lines(tmp_path / "meta_Books.json", [json.dumps({"asin": a, "title": a}) for a in "AB"])
    with pytest.raises(ConfigError, match=r"Books\.json line 2: 'unixReviewTime' nan is not a finite number"):
        convert("amazon2018", str(tmp_path / "out"), "b", reviews=reviews, meta=meta)


def test_time_unit_on_the_command_line(tmp_path, capsys):
    files = _generic(tmp_path, [T0 * 1000, T0 + DAY])
    args = ["generic", "--interactions", files["interactions"], "--items", files["items"], "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--time_unit=ms or --time_unit=s" in capsys.readouterr().err
    assert main(args + ["--time_unit", "sec"]) == 2  # argparse's choices
    assert "invalid choice: 'sec'" in capsys.readouterr().err
    assert main(args + ["--time_unit", "ms"]) == 0
    assert "timestamps: milliseconds (--time_unit=ms), written as unix seconds" in capsys.readouterr().out
    for source in ("amazon2014", "amazon2018", "amazon2023", "generic"):
        assert main([source, "--help"]) == 0
        assert "--time_unit {s,ms}" in capsys.readouterr().out


def test_time_unit_in_the_python_api_is_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"^--time_unit must be s or ms, not 'seconds'; e.g. --time_unit=s$"):
        convert("generic", str(tmp_path / "out"), "g", **_generic(tmp_path, [T0]), time_unit="seconds")


@pytest.mark.parametrize("values, unit", [
    ([0.0, 1.0, 2.0], "seconds"),  # synthetic small times stay seconds
    ([-DAY, T0], "seconds"),  # before 1970
    ([1e11, 2e11], "milliseconds"),
    ([-2e11, 1e12], "milliseconds"),  # before 1966, in ms
])
def test_detection_by_magnitude(values, unit):
    from recbole_msl.convert.time_units import to_seconds

    time = np.array(values, dtype=np.float64)
    seconds, read = to_seconds(time, None, "f", "t", lambda row: row + 1)
    assert read.startswith(unit)
    np.testing.assert_array_equal(seconds, time / (1000 if unit == "milliseconds" else 1))
