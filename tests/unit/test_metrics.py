"""evalsuite.metrics on constructed cases with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
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


def test_posix_normalisations_on_a_hand_computed_set():
    """The paper divides each |Δ log P| by the response's length, the released library by max_new_tokens;
    the index order (row = prompt, column = response) is the paper's in both."""
    logp = [[-2.0, -6.0, -9.0],
            [-3.0, -4.0, -8.0],
            [-5.0, -7.0, -3.0]]
    lengths = [2, 4, 3]
    # |Δ| per response j: j=0: 1 + 3 = 4;  j=1: 2 + 3 = 5;  j=2: 6 + 5 = 11
    paper = (4 / 2 + 5 / 4 + 11 / 3) / 6
    assert posix_psi(logp, lengths, normalization="response_length") == pytest.approx(paper) == pytest.approx(83 / 72)
    library = posix_psi(logp, lengths, normalization="max_new_tokens", max_new_tokens=10)
    assert library == pytest.approx((4 + 5 + 11) / 10 / 6) == pytest.approx(1 / 3)
    # lengths are not read as divisors under max_new_tokens (an empty response is no error there)
    assert posix_psi(logp, [0, 0, 0], normalization="max_new_tokens", max_new_tokens=20) == pytest.approx(1 / 6)
    identical = [[-1.0, -2.0], [-1.0, -2.0]]
    assert posix([(logp, lengths), (identical, [1, 1])], normalization="max_new_tokens",
                 max_new_tokens=10) == pytest.approx(1 / 6)
    for bad in (None, 0, -5):
        with pytest.raises(ValueError, match="max_new_tokens >= 1"):
            posix_psi(logp, lengths, normalization="max_new_tokens", max_new_tokens=bad)
        with pytest.raises(ValueError, match="max_new_tokens >= 1"):
            posix([(logp, lengths)], normalization="max_new_tokens", max_new_tokens=bad)
    with pytest.raises(ValueError, match="normalization must be"):
        posix_psi(logp, lengths, normalization="tokens")


def test_robustness_on_constructed_answers():
    clean = {"a": ("A", 1), "b": ("B", 0), "c": ("C", 1), "d": ("D", 1)}
    perturbed = {"a": [("A", 1), ("B", 0)], "b": [("A", 1)], "c": [("C", 1), ("C", 1)], "e": [("A", 1)]}
    r = robustness(clean, perturbed)
    assert (r.items, r.pairs, r.missing) == (3, 5, 2)  # d has no variant, e has no clean result
    assert r.clean_score == pytest.approx(2 / 3) and r.perturbed_score == pytest.approx(0.8)
    assert r.performance_drop_rate == pytest.approx(1 - 0.8 / (2 / 3))  # negative: perturbation helped here
    assert r.worst_case_perturbed == pytest.approx(2 / 3)
    assert r.agreement == pytest.approx(3 / 5)
    assert r.correct_to_wrong == pytest.approx(1 / 5) and r.wrong_to_correct == pytest.approx(1 / 5)
    rated = robustness({"q": (None, 8.0)}, {"q": [(None, 6.0), (None, 4.0)]})
    assert rated.agreement is None and rated.correct_to_wrong is None
    assert rated.performance_drop_rate == pytest.approx(1 - 5 / 8) and rated.worst_case_perturbed == 4.0
    assert robustness({"x": ("A", 0)}, {"x": [("A", 0)]}).performance_drop_rate is None
    with pytest.raises(ValueError):
        robustness({"a": ("A", 1)}, {"b": [("A", 1)]})


def test_worst_case_with_and_without_the_clean_answer():
    """`worst_case_perturbed` takes the minimum over an item's variants, `worst_case_with_clean` (HELM's)
    over the clean answer and its variants: they differ where every variant beats the clean answer."""
    clean = {"a": ("B", 0), "b": ("A", 1), "c": ("C", 1)}
    perturbed = {"a": [("A", 1), ("A", 1)], "b": [("A", 1), ("C", 0)], "c": [("C", 1)]}
    r = robustness(clean, perturbed)
    # per item, variants only: a 1, b 0, c 1;  with the clean answer: a 0, b 0, c 1
    assert r.worst_case_perturbed == pytest.approx(2 / 3)
    assert r.worst_case_with_clean == pytest.approx(1 / 3)
    rated = robustness({"q": (None, 3.0), "s": (None, 9.0)}, {"q": [(None, 6.0), (None, 4.0)], "s": [(None, 7.0)]})
    # q: min(6, 4) = 4 vs min(3, 6, 4) = 3;  s: 7 vs min(9, 7) = 7
    assert rated.worst_case_perturbed == pytest.approx((4 + 7) / 2)
    assert rated.worst_case_with_clean == pytest.approx((3 + 7) / 2)
    assert not hasattr(r, "worst_case_score")  # the old, ambiguous name is gone


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


def _old_means(x, resamples, seed):
    """The implementation before chunking, kept as the reference: the whole resamples × n index matrix."""
    return x[np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))].mean(axis=1)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 1001, 14_042])
def test_chunked_bootstrap_matches_the_one_matrix_draw(n):
    """Drawing resamples a chunk of rows at a time gives exactly the old single draw for the same seed, for
    odd and even n, with chunks small enough that many are drawn (and an odd last one)."""
    from evalsuite.metrics.resampling import CHUNK_BYTES, resampled_means

    values = np.random.default_rng(n).random(n).round(3)
    resamples = 101 if n > 1000 else 1001
    for budget in (8 * n * 2, 8 * n * 6, CHUNK_BYTES):
        for seed in (0, 5):
            assert np.array_equal(resampled_means(values, resamples, seed, budget), _old_means(values, resamples, seed))
    alpha = (1 - 0.95) / 2  # as the functions compute it (not exactly 0.025)

    def old_interval(x, seed):
        return tuple(float(v) for v in np.quantile(_old_means(x, resamples, seed), [alpha, 1 - alpha]))

    if n > 1:  # bootstrap_ci returns a single value's mean without resampling
        est = bootstrap_ci(values, resamples=resamples, seed=3)
        assert (est.low, est.high) == old_interval(values, 3)
    other = values[::-1].copy()
    pb = paired_bootstrap(values, other, resamples=resamples, seed=4)
    assert (pb.low, pb.high) == old_interval(other - values, 4)


def test_bootstrap_memory_is_bounded():
    """MMLU-sized n: tracemalloc's peak over a whole `bootstrap_ci` / `paired_bootstrap` stays within two
    16 MiB chunks (indices and gathered values) plus change, where the old code held resamples × n of each at
    once (10,000 × 14,042 × 8 B ≈ 1.1 GB; ~110 MB each for the 1,000 resamples here); a chunk's rows are even."""
    import tracemalloc

    n = 14_042
    x = list(np.random.default_rng(0).random(n))
    for run in (lambda: bootstrap_ci(x, resamples=1_000), lambda: paired_bootstrap(x, x[::-1], resamples=1_000)):
        tracemalloc.start()
        try:
            run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak <= 2 * 16 * 2**20 + 2**20, peak
    from evalsuite.metrics.resampling import CHUNK_BYTES, chunk_rows

    rows = chunk_rows(n)
    assert rows % 2 == 0 and 2 <= rows < 1_000 and rows * n * 8 <= CHUNK_BYTES <= 16 * 2**20
    assert chunk_rows(10**9) == 2  # never fewer than two rows
