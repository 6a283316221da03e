"""ClassificationBandit: what leaks, stream order, long-tail profile, costs, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from rewind.envs import make_env
from rewind.envs.bandit import ClassificationBandit, longtail_counts, progressive_validation
from rewind.errors import RewindError


def test_without_full_feedback_only_the_chosen_arms_reward_leaks():
    env = ClassificationBandit("iris")
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=3)
    seen_rewards = []
    for _ in range(300):
        i = env.current_index
        assert info == {}
        np.testing.assert_array_equal(obs, env.X[i])
        a = int(rng.integers(3))
        nxt, r, term, trunc, info = env.step(a)
        assert term and not trunc
        assert info == {}                                # no label, no other arms' rewards
        np.testing.assert_array_equal(nxt, env.X[i])     # the observation is the context, nothing more
        assert r == float(a == env.y[i])
        seen_rewards.append(r)
        obs, info = env.reset()
    assert 0 < np.mean(seen_rewards) < 1


def test_full_feedback_gives_the_label_and_wrappers_add_only_the_return():
    full = make_env("rewind/bandit-wine-v0", {"full_feedback": True})
    plain = make_env("rewind/bandit-wine-v0")
    for env, expect_label in ((full, True), (plain, False)):
        env.reset(seed=0)
        i = env.unwrapped.current_index
        _, r, _, _, info = env.step(0)
        assert set(info) == ({"label", "episode"} if expect_label else {"episode"})
        assert info["episode"]["r"] == r and info["episode"]["l"] == 1
        if expect_label:
            assert info["label"] == env.unwrapped.y[i]


def test_stream_is_a_seeded_permutation_per_pass():
    env = ClassificationBandit("wine")
    n = len(env.y)
    rows = env.stream_indices(2 * n, seed=7)
    assert sorted(rows[:n]) == list(range(n)) and sorted(rows[n:]) == list(range(n))
    assert not np.array_equal(rows[:n], rows[n:])          # a fresh permutation each pass
    np.testing.assert_array_equal(rows, env.stream_indices(2 * n, seed=7))
    assert not np.array_equal(rows, env.stream_indices(2 * n, seed=8))
    shown = []
    env.reset(seed=7)
    for _ in range(n + 5):
        shown.append(env.current_index)
        env.step(0)
        env.reset()
    np.testing.assert_array_equal(shown, rows[: n + 5])
    fixed = ClassificationBandit("wine", order="fixed").stream_indices(n, seed=1)
    np.testing.assert_array_equal(fixed, np.arange(n))
    srt = ClassificationBandit("wine", order="sorted")
    assert np.all(np.diff(srt.y[srt.stream_indices(n, seed=1)]) >= 0)
    pinned = ClassificationBandit("wine", shuffle_seed=5)
    np.testing.assert_array_equal(pinned.stream_indices(n, seed=1), pinned.stream_indices(n, seed=2))


def test_longtail_follows_the_exponential_profile():
    env = ClassificationBandit("digits", imbalance=100.0)
    counts = env.class_counts
    n_max = counts[0]
    expected = np.floor(n_max * 100.0 ** (-np.arange(10) / 9) + 1e-9)
    np.testing.assert_array_equal(counts, expected)
    assert counts[-1] == 1                                   # floor(178 / 100), as Cui et al.'s int()
    np.testing.assert_array_equal(longtail_counts(5000, 10, 100.0)[[0, -1]], [5000, 50])
    np.testing.assert_array_equal(longtail_counts(5000, 10, 10.0)[[0, -1]], [5000, 500])
    # the held-out split is never long-tailed
    test = ClassificationBandit("digits", imbalance=100.0, test_fraction=0.3, split="test")
    assert test.class_counts.min() >= 0.8 * test.class_counts.max()


def test_cost_matrix_sets_rewards_and_pv_loss_is_mean_cost():
    cost = np.full((3, 3), 0.5)
    np.fill_diagonal(cost, 0.0)
    cost[0, 2] = 1.0
    env = ClassificationBandit("iris", cost_matrix=cost, order="fixed")
    env.reset(seed=0)
    rewards, costs = [], []
    for a in [2, 1, 0, 2]:
        y = env.y[env.current_index]
        _, r, *_ = env.step(a)
        rewards.append(r)
        costs.append(cost[y, a])
        env.reset()
    np.testing.assert_allclose(rewards, 1 - np.array(costs))
    assert progressive_validation(rewards) == pytest.approx(np.mean(costs))


def test_arrays_and_csv_with_text_labels(tmp_path):
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    env = ClassificationBandit(X=X, y=np.array(["b", "a", "b", "c"]), scale="none")
    assert env.action_space.n == 3 and list(env.classes) == ["a", "b", "c"]
    path = tmp_path / "d.csv"
    path.write_text("f1,kind,f2\n0,cat,1\n1,dog,0\n2,cat,3\n")
    env = ClassificationBandit(str(path), label="kind", scale="none")
    np.testing.assert_array_equal(env.X, [[0, 1], [1, 0], [2, 3]])
    np.testing.assert_array_equal(env.y, [0, 1, 0])


@pytest.mark.parametrize("kwargs, match", [
    ({"X": [[0.0, np.nan], [1.0, 2.0]], "y": [0, 1]}, "NaN"),
    ({"data": "iris", "n_classes": 4}, "n_classes=4.*3 classes"),
    ({"data": "iris", "cost_matrix": np.zeros((2, 3))}, "cost_matrix must be 3x3"),
    ({"data": "iris", "cost_matrix": np.full((3, 3), 2.0)}, r"\[0, 1\]"),
    ({"data": "mnist"}, "unknown dataset 'mnist'"),
    ({"data": "iris", "imbalance": 0.5}, "imbalance must be >= 1"),
    ({"data": "iris", "order": "random"}, "order must be one of"),
])
def test_bad_input_is_one_clear_error(kwargs, match):
    with pytest.raises(RewindError, match=match):
        ClassificationBandit(**kwargs)


def test_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("f1,kind\n0,cat\n,dog\n")
    with pytest.raises(RewindError, match="label column 'label' not in .*columns: f1, kind"):
        ClassificationBandit(str(path), label="label")
    with pytest.raises(RewindError, match="NaN"):
        ClassificationBandit(str(path), label="kind")
    with pytest.raises(RewindError, match="not found"):
        ClassificationBandit(str(tmp_path / "missing.csv"), label="kind")
    # through the env factory (gym.make kwargs) the error is the same one line
    with pytest.raises(RewindError, match="cost_matrix must be 10x10"):
        make_env("rewind/bandit-digits-v0", {"cost_matrix": [[0.0, 1.0], [1.0, 0.0]]})
