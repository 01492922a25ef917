"""riskhub.risk.limits: the hub's limit file (specificity, bad files) and breaches from both sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskhub.bootstrap import build_risk_policy
from riskhub.config import Settings
from riskhub.risk.analytics import analyze
from riskhub.risk.limits import Breach, Limit, LimitBook, evaluate, load_limits

# Listed most specific first, so file order cannot be what picks the winner.
LAYERED = """
[[limit]]
world = "w1"
stage = "live"
metric = "var_99"
max = 0.01
severity = "breach"

[[limit]]
world = "w1"
stage = "*"
metric = "var_99"
max = 0.02
severity = "breach"

[[limit]]
world = "*"
stage = "live"
metric = "var_99"
max = 0.03
severity = "warn"

[[limit]]
world = "*"
stage = "*"
metric = "var_99"
max = 0.04
severity = "warn"

[[limit]]
metric = "gross"
max = 1.5
severity = "breach"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "limits.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def book(tmp_path: Path) -> LimitBook:
    return load_limits(write(tmp_path, LAYERED))


@pytest.mark.parametrize(
    ("world", "stage", "expected_max"),
    [
        ("w1", "live", 0.01),  # world and stage
        ("w1", "paper", 0.02),  # world
        ("w2", "live", 0.03),  # stage
        ("w2", "paper", 0.04),  # */*
    ],
)
def test_the_most_specific_limit_wins_per_metric(
    book: LimitBook, world: str, stage: str, expected_max: float
) -> None:
    chosen = book.for_snapshot(world, stage)
    assert chosen["var_99"].max == expected_max
    assert chosen["gross"] == Limit(metric="gross", max=1.5, severity="breach")  # world/stage default "*"


def test_world_beats_stage_whatever_the_row_order() -> None:
    stage_only = Limit("es_975", 0.3, "warn", stage="live")
    world_only = Limit("es_975", 0.2, "breach", world="w1")
    for rows in ((stage_only, world_only), (world_only, stage_only)):
        assert LimitBook(rows).for_snapshot("w1", "live")["es_975"] == world_only


def test_limits_of_other_worlds_and_stages_do_not_apply() -> None:
    book = LimitBook((Limit("sigma_annual", 0.2, "warn", world="w9", stage="live"),))
    assert book.for_snapshot("w1", "live") == {}
    assert book.for_snapshot("w9", "paper") == {}


def test_hub_limit_breaches_only_above_max_and_never_on_unknown_figures() -> None:
    limits = {
        "var_99": Limit("var_99", 0.05, "breach"),
        "es_99": Limit("es_99", 0.07, "warn"),
        "hist_var_99": Limit("hist_var_99", 0.01, "breach"),
    }
    figures = {"var_99": 0.06, "es_99": 0.07, "hist_var_99": None}
    assert evaluate(figures, limits) == [Breach("var_99", 0.06, 0.05, "breach", "limits")]


def test_hub_limits_and_snapshot_constraints_both_breach() -> None:
    weights = {"a": 0.5, "b": -0.35, "c": 0.2, "d": 0.65}
    figures = analyze(weights).figures  # gross = 0.5 + 0.35 + 0.2 + 0.65 = 1.7
    limits = {"gross": Limit("gross", 1.5, "warn"), "max_weight": Limit("max_weight", 0.6, "breach")}
    constraints = {"max_weight": 0.4, "max_gross": 1.6, "other": "ignored"}
    breaches = evaluate(figures, limits, constraints, weights)
    assert [b.to_json() for b in breaches] == [
        {
            "metric": "gross",
            "value": pytest.approx(1.7),
            "max": 1.5,
            "severity": "warn",
            "source": "limits",
            "id": None,
        },
        {
            "metric": "max_weight",
            "value": 0.65,
            "max": 0.6,
            "severity": "breach",
            "source": "limits",
            "id": None,
        },
        {
            "metric": "max_weight",
            "value": 0.5,
            "max": 0.4,
            "severity": "breach",
            "source": "constraints",
            "id": "a",
        },
        {
            "metric": "max_weight",
            "value": 0.65,
            "max": 0.4,
            "severity": "breach",
            "source": "constraints",
            "id": "d",
        },
        {
            "metric": "gross",
            "value": pytest.approx(1.7),
            "max": 1.6,
            "severity": "breach",
            "source": "constraints",
            "id": None,
        },
    ]


def test_constraints_use_absolute_weights_and_the_figure_without_weights() -> None:
    weights = {"a": 1.2, "b": -0.5, "c": 0.3}
    breaches = evaluate(analyze(weights).figures, {}, {"max_weight": 0.45}, weights)
    assert [(b.id, b.value) for b in breaches] == [("a", 1.2), ("b", 0.5)]
    only_figure = evaluate({"max_weight": 1.2}, {}, {"max_weight": 0.45})
    assert only_figure == [Breach("max_weight", 1.2, 0.45, "breach", "constraints")]


def test_gross_past_float_range_breaches_max_gross() -> None:
    weights = {"a": 1e308, "b": -1e308, "c": 1.0}
    figures = analyze(weights).figures
    assert figures["gross"] is None
    assert evaluate(figures, {}, {"max_gross": 3.0}) == [Breach("gross", None, 3.0, "breach", "constraints")]


def test_no_constraints_and_no_limits_mean_no_breaches() -> None:
    assert evaluate({"var_99": 9.0}, {}, None) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[limit]]\nmetric = "var_99"\nmax = 0.05\nseverity = "fatal"\n',
            "limit[0].severity: unknown severity 'fatal'",
        ),
        (
            '[[limit]]\nmetric = "var_99"\nmax = "0.05"\nseverity = "warn"\n',
            "limit[0].max: must be a finite number",
        ),
        (
            '[[limit]]\nmetric = "var_99"\nmax = true\nseverity = "warn"\n',
            "limit[0].max: must be a finite number",
        ),
        (
            '[[limit]]\nmetric = "var_99"\nmax = nan\nseverity = "warn"\n',
            "limit[0].max: must be a finite number",
        ),
        ('[[limit]]\nmetric = "var_99"\nseverity = "warn"\n', "limit[0].max: missing"),
        (
            '[[limit]]\nmetric = "var_99"\nmax = 1\nseverity = "warn"\n'
            '[[limit]]\nmax = 0.05\nseverity = "warn"\n',
            "limit[1].metric: missing",
        ),
        (
            '[[limit]]\nmetric = "var_999"\nmax = 0.05\nseverity = "warn"\n',
            "limit[0].metric: unknown metric 'var_999'",
        ),
        ('[[limit]]\nmetric = "var_99"\nmax = 0.05\n', "limit[0].severity: missing"),
        (
            '[[limit]]\nmetric = "var_99"\nmaximum = 0.05\nseverity = "warn"\n',
            "limit[0].maximum: unknown field",
        ),
        (
            '[[limit]]\nmetric = "var_99"\nmax = 0.05\nseverity = "warn"\nworld = 3\n',
            "limit[0].world: must be",
        ),
        (
            '[[limit]]\nmetric = "var_99"\nmax = 0.05\nseverity = "warn"\n' * 2,
            "limit[1]: duplicates limit[0]",
        ),
        ('[limits]\nmetric = "var_99"\n', "unknown top-level key 'limits'"),
        ("limit = 3\n", "'limit' must be an array of tables"),
        ("[[limit]\n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_row_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as raised:
        load_limits(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_an_integer_max_is_a_number(tmp_path: Path) -> None:
    book = load_limits(write(tmp_path, '[[limit]]\nmetric = "positions"\nmax = 50\nseverity = "warn"\n'))
    assert book.for_snapshot("w", "s")["positions"].max == 50.0


def test_limits_file_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, LAYERED)
    monkeypatch.setenv("RISKHUB_LIMITS_FILE", str(path))
    assert build_risk_policy(Settings()).limits.for_snapshot("w1", "live")["var_99"].max == 0.01
    monkeypatch.delenv("RISKHUB_LIMITS_FILE")
    assert build_risk_policy(Settings()).limits == LimitBook()
