"""The protocol's metric functions against values computed by hand."""
import numpy as np
import pytest

from momask_model.evaluate import metrics as M


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 8))
    assert M.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_shifted_means_is_squared_shift():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 8))
    sigma = a @ a.T + np.eye(8)
    mu = rng.standard_normal(8)
    delta = np.arange(8) * 0.3
    assert M.frechet_distance(mu, sigma, mu + delta, sigma) == pytest.approx(float(delta @ delta), rel=1e-6)


def test_frechet_distance_of_scaled_isotropic_gaussians():
    # N(0, I) vs N(0, 4I) in d dims: tr(I + 4I - 2*2I) = d
    assert M.frechet_distance(np.zeros(5), np.eye(5), np.zeros(5), 4 * np.eye(5)) == pytest.approx(5.0)


def test_r_precision_of_perfect_diagonal_is_one():
    d = np.full((32, 32), 5.0)
    np.fill_diagonal(d, 0.1)
    assert M.top_k_hits(d).all()
    t = np.eye(32) * 10
    ms = M.matching_scores(t, t, batch_size=32)
    assert ms.r_precision == (1.0, 1.0, 1.0)
    assert ms.mm_dist == pytest.approx(0.0)


def test_r_precision_counts_rank_of_own_motion():
    # own motion is 2nd nearest for every row -> top1 = 0, top2 = top3 = 1
    d = np.array([[1.0, 0.5, 9.0], [9.0, 1.0, 0.5], [0.5, 9.0, 1.0]])
    hits = M.top_k_hits(d)
    assert hits[:, 0].sum() == 0 and hits[:, 1].all() and hits[:, 2].all()


def test_matching_scores_drop_incomplete_batch_and_average_distances():
    t = np.zeros((10, 2))
    m = np.tile([3.0, 4.0], (10, 1))
    ms = M.matching_scores(t, m, batch_size=4)
    assert ms.num_samples == 8
    assert ms.mm_dist == pytest.approx(5.0)


def test_confidence_interval_formula():
    v = np.array([1.0, 2.0, 3.0, 4.0])
    mean, ci = M.mean_confidence_interval(v)
    assert mean == 2.5
    assert ci == pytest.approx(1.96 * np.std(v) / 2.0)
    s = M.summarize_replications([{"fid": 1.0}, {"fid": 3.0}])
    assert s["fid"]["mean"] == 2.0 and s["fid"]["runs"] == 2


def test_diversity_and_multimodality_by_hand():
    rng = np.random.default_rng(0)
    x = np.zeros((400, 3))
    x[:, 0] = np.arange(400) % 2  # points at distance 0 or 1
    div = M.diversity(x, times=300, rng=rng)
    assert 0.3 < div < 0.7
    same = np.ones((4, 30, 3))
    assert M.multimodality(same, times=10, rng=rng) == 0.0
    spread = np.zeros((2, 30, 1))
    spread[:, :, 0] = np.arange(30)
    assert M.multimodality(spread, times=10, rng=np.random.default_rng(1)) > 1.0


def test_mpjpe_is_root_aligned_and_in_input_units():
    g = np.random.default_rng(0).standard_normal((5, 22, 3))
    assert M.mpjpe(g + np.array([1.0, 2.0, 3.0]), g) == pytest.approx(0.0, abs=1e-12)
    p = g.copy()
    p[:, 1:, 0] += 0.03  # every non-root joint 3 cm off
    assert M.mpjpe(p, g) == pytest.approx(0.03 * 21 / 22)


def test_codebook_usage_counts_used_codes_and_ignores_dropped_layers():
    codes = np.array([[0, -1], [1, -1], [1, 3], [2, 3]])
    u = M.codebook_usage(codes, nb_code=4)
    assert u["usage"] == [0.75, 0.25]
    assert u["perplexity"][1] == pytest.approx(1.0)
    with pytest.raises(M.MetricInputError):
        M.codebook_usage(np.array([[5]]), nb_code=4)


def test_bad_shapes_raise_typed_errors():
    with pytest.raises(M.MetricInputError):
        M.fid(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(M.MetricInputError):
        M.matching_scores(np.zeros((4, 3)), np.zeros((4, 2)), batch_size=2)
    with pytest.raises(M.MetricInputError):
        M.matching_scores(np.zeros((3, 2)), np.zeros((3, 2)), batch_size=32)
