"""evalsuite.metrics on constructed cases with hand-computed answers."""

from __future__ import annotations

import math

import pytest

from evalsuite.metrics import bootstrap_ci, mcnemar, paired_bootstrap, posix, posix_psi, robustness


def test_posix_on_a_hand_computed_three_prompt_set():
    # logp[i][j] = log P(y_j | x_i); lengths L_{y_j}
    logp = [[-2.0, -6.0, -9.0],
            [-3.0, -4.0, -8.0],
            [-5.0, -7.0, -3.0]]
    lengths = [2, 4, 3]
    # j=0: |-3+2|/2 + |-5+2|/2 = 0.5 + 1.5;  j=1: |-6+4|/4 + |-7+4|/4 = 0.5 + 0.75;  j=2: |-9+3|/3 + |-8+3|/3 = 2 + 5/3
    assert posix_psi(logp, lengths) == pytest.approx((0.5 + 1.5 + 0.5 + 0.75 + 2 + 5 / 3) / 6) == pytest.approx(83 / 72)
    # the released library's reading (indices swapped: |log P(y_i|x_j) − log P(y_i|x_i)| / L_{y_j}) gives another value
    swapped = sum(abs(logp[j][i] - logp[i][i]) / lengths[j] for i in range(3) for j in range(3) if i != j) / 6
    assert swapped != pytest.approx(83 / 72)
    identical = [[-1.0, -2.0], [-1.0, -2.0]]
    assert posix_psi(identical, [1, 1]) == 0.0  # a prompt change that moves no log-prob: perfectly robust
    assert posix([(logp, lengths), (identical, [1, 1])]) == pytest.approx(83 / 144)
    with pytest.raises(ValueError, match="at least two"):
        posix_psi([[-1.0]], [1])
    with pytest.raises(ValueError, match="at least one token"):
        posix_psi(identical, [1, 0])


def test_robustness_on_constructed_answers():
    clean = {"a": ("A", 1), "b": ("B", 0), "c": ("C", 1), "d": ("D", 1)}
    perturbed = {"a": [("A", 1), ("B", 0)], "b": [("A", 1)], "c": [("C", 1), ("C", 1)], "e": [("A", 1)]}
    r = robustness(clean, perturbed)
    assert (r.items, r.pairs, r.missing) == (3, 5, 2)  # d has no variant, e has no clean result
    assert r.clean_score == pytest.approx(2 / 3) and r.perturbed_score == pytest.approx(0.8)
    assert r.performance_drop_rate == pytest.approx(1 - 0.8 / (2 / 3))  # negative: perturbation helped here
    assert r.worst_case_score == pytest.approx(2 / 3)
    assert r.agreement == pytest.approx(3 / 5)
    assert r.correct_to_wrong == pytest.approx(1 / 5) and r.wrong_to_correct == pytest.approx(1 / 5)
    rated = robustness({"q": (None, 8.0)}, {"q": [(None, 6.0), (None, 4.0)]})
    assert rated.agreement is None and rated.correct_to_wrong is None
    assert rated.performance_drop_rate == pytest.approx(1 - 5 / 8) and rated.worst_case_score == 4.0
    assert robustness({"x": ("A", 0)}, {"x": [("A", 0)]}).performance_drop_rate is None
    with pytest.raises(ValueError):
        robustness({"a": ("A", 1)}, {"b": [("A", 1)]})


def test_bootstrap_interval():
    same = bootstrap_ci([0.7] * 20)
    assert same.n == 20 and same.value == pytest.approx(0.7) and same.low == pytest.approx(0.7) == same.high
    coin = [1, 0] * 200  # p = 0.5, n = 400: the normal interval is ±1.96·0.025 = ±0.049
    est = bootstrap_ci(coin, seed=3)
    assert est.value == 0.5 and est.low == pytest.approx(0.451, abs=0.008) and est.high == pytest.approx(0.549, abs=0.008)
    assert bootstrap_ci(coin, seed=3) == est  # seeded
    assert bootstrap_ci([1.0]).low == 1.0
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])


def test_mcnemar_exact_and_chi_square_against_closed_forms():
    # 10 items only a gets right, 2 only b: exact two-sided binomial p = 2·P(X ≤ 2 | n=12, ½)
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    r = mcnemar(a, b)
    assert (r.only_a, r.only_b, r.exact) == (10, 2, True)
    assert r.p_value == pytest.approx(2 * sum(math.comb(12, k) for k in range(3)) / 2 ** 12)
    # 30 vs 10 discordant: chi-square with continuity correction, (|30−10|−1)²/40 on 1 d.f.
    a = [True] * 30 + [False] * 10
    b = [False] * 30 + [True] * 10
    r = mcnemar(a, b)
    assert not r.exact and r.statistic == pytest.approx(19 ** 2 / 40)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(r.statistic / 2)))  # chi-square(1) survival function
    assert mcnemar([True, False], [True, False]).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_paired_bootstrap():
    a = [0.2, 0.5, 0.4, 0.9, 0.3] * 10
    same = paired_bootstrap(a, a)
    assert same.difference == 0 and same.p_value == 1.0
    better = paired_bootstrap(a, [x + 0.1 for x in a])
    assert better.difference == pytest.approx(0.1) and better.low == pytest.approx(0.1) and better.p_value == 0.0
    noisy = paired_bootstrap([0, 1, 0, 1, 1, 0, 1, 0], [1, 0, 0, 1, 1, 0, 0, 1], seed=1)
    assert noisy.difference == 0 and noisy.p_value > 0.5 and noisy.low < 0 < noisy.high
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
