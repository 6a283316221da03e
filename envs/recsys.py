"""A YouTube-style recommender as a contextual bandit (docs/recsys.md; Covington et al. 2016).

Each episode is one step: reset() shows a user (watch history, demographics) at time t, the
agent recommends one item from the whole catalogue, and the env answers with a click
(Bernoulli) and, if clicked, a watch time (Gamma). The reward is the watch time (0 without a
click), or the click with ``reward="click"``. Only the shown item's feedback is revealed.

Ground truth (every constant a config field; docs/recsys.md has the table):

- item i: latent vector v_i, quality q_i, length L_i (minutes), clickbait flag b_i, and a
  publication step p_i. Items are numbered in publication order: a fraction
  ``initial_items`` exists at t = 0, the rest arrive evenly over ``publish_steps`` steps.
- user j: latent preference u_j = group centroid of its demographics + individual noise;
  affinity a_ij = u_j . v_i (about unit variance).
- P(click) = sigmoid(click_bias + a_ij + q_i + bait_click * b_i
                     + freshness_boost * exp(-(t - p_i) / freshness_decay)),   0 before p_i
- watch | click ~ Gamma(watch_shape, mean = L_i * sigmoid(1 + a_ij - bait_watch * b_i)).
  Clickbait gets clicks and loses watch time, so click-optimal and watch-optimal differ.
- popularity dynamics: an item is most attractive when new and fades with age, so what
  was clicked long ago is a biased guide to what is clicked now (why example age matters).

Slates (``slate_size`` k >= 1, ``rewind/recsys-slate5-v0``): the action is k distinct item
ids, best position first (``SlateSpace``, a MultiDiscrete without repeats; a repeated or
out-of-range item is a RewindError). The user picks at most one item by a multinomial logit
over the slate and a no-click option (as RecSim's MNL choice model): position p has attraction
``slate_position_decay``**p * exp(z_i), z_i the click logit above, the no-click option 1.
A one-item slate is thus clicked with probability sigmoid(z_i) and k = 1 is the single-item
env draw for draw. The chosen item's watch time follows the same Gamma. ``info`` adds
``chosen`` (position, -1 none) and ``chosen_item``; ``expected_reward`` is the slate's,
``best_action`` / ``best_expected_reward`` the exact best ordered slate (``World.best_slate``);
``propensity`` and ``position_propensities`` when the agent sends a ``LoggedSlate``.

Observation (flat float32): the last ``history_len`` watched item ids (-1 = empty), the
demographics one-hot, t / publish_steps and the fraction of the catalogue published
(``split_obs`` takes it apart). ``info``: click, watch_time, expected_reward (of the action
taken), best_expected_reward and best_action (for regret), propensity (of the action taken,
only when the agent sent it with a ``LoggedAction``), user, t.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np

from rewind.errors import RewindError

N_AGE, N_GENDER = 4, 2          # demographics: age bucket and gender, one-hot
N_DEMO = N_AGE + N_GENDER
REWARDS = ("watch_time", "click")


class LoggedAction(int):
    """An item id that carries the probability with which the agent chose it.

    It is an ``int`` everywhere (spaces, loops, checkpoints), so any run loop passes it through
    unchanged; the recsys env copies ``propensity`` into ``info`` for off-policy evaluation.
    """

    propensity: float

    def __new__(cls, item: int, propensity: float):
        obj = super().__new__(cls, int(item))
        obj.propensity = float(propensity)
        return obj


class LoggedSlate(np.ndarray):
    """A slate (k distinct item ids, int64, best position first) with its logging probabilities.

    ``propensity`` is the probability with which the agent chose this ordered slate;
    ``position_propensities[p]`` the probability that position p shows the item it shows (the
    per-position propensities slate OPE estimators use). The env copies both into ``info``.
    """

    def __new__(cls, items, propensity: float, position_propensities):
        obj = np.asarray(items, dtype=np.int64).reshape(-1).view(cls)
        obj.propensity = float(propensity)
        obj.position_propensities = np.asarray(position_propensities, dtype=np.float64).reshape(-1)
        return obj

    def __array_finalize__(self, obj):
        self.propensity = getattr(obj, "propensity", math.nan)
        self.position_propensities = getattr(obj, "position_propensities", None)


class SlateSpace(gym.spaces.MultiDiscrete):
    """k distinct items out of n, best position first: MultiDiscrete([n] * k) without repeats.

    ``sample`` draws k distinct items (so random agents and gymnasium's checker send valid
    slates) and ``contains`` is false for a slate with a repeated item.
    """

    def __init__(self, n: int, k: int, seed=None):
        super().__init__(np.full(k, n, dtype=np.int64), dtype=np.int64, seed=seed)
        self.n_items, self.slate_size = n, k

    def sample(self, mask=None, probability=None) -> np.ndarray:
        if mask is not None or probability is not None:
            raise RewindError("SlateSpace.sample takes no mask or probability")
        return self.np_random.choice(self.n_items, self.slate_size, replace=False).astype(np.int64)

    def contains(self, x) -> bool:
        return bool(super().contains(x)) and len(np.unique(np.asarray(x))) == self.slate_size

    def __repr__(self) -> str:
        return f"SlateSpace(n_items={self.n_items}, k={self.slate_size})"

    def __eq__(self, other) -> bool:
        return isinstance(other, SlateSpace) and (other.n_items, other.slate_size) == (self.n_items, self.slate_size)


@dataclasses.dataclass
class RecsysConfig:
    n_items: int = 2000
    n_users: int = 500
    latent_dim: int = 8
    history_len: int = 10
    initial_items: float = 0.5        # fraction of the catalogue published at t = 0
    publish_steps: int = 20_000       # the rest arrive evenly over this many steps
    freshness_boost: float = 1.5      # click-logit bonus of a brand-new item
    freshness_decay: float = 2_000.0  # steps for that bonus to fall by a factor e
    click_bias: float = -3.0
    quality_std: float = 0.5
    bait_fraction: float = 0.2        # share of clickbait items
    bait_click: float = 1.5           # their click-logit bonus
    bait_watch: float = 3.0           # their watch-completion logit penalty
    length_median: float = 5.0        # minutes; lengths are log-normal
    length_sigma: float = 0.5
    watch_shape: float = 2.0          # Gamma shape of watch time given a click
    group_weight: float = 0.7         # share of a user's preference set by its demographics
    reward: str = "watch_time"        # or "click"
    slate_size: int = 0               # 0: one item per step (Discrete); k >= 1: a slate of k distinct items
    slate_position_decay: float = 1.0 # MNL attraction of position p is multiplied by decay ** p (1: no position bias)
    world_seed: int | None = None     # None: the world is drawn from the seed of the first reset

    def validate(self) -> None:
        ints = {"n_items": 2, "n_users": 1, "latent_dim": 1, "history_len": 1, "publish_steps": 1}
        for key, low in ints.items():
            if getattr(self, key) < low:
                raise RewindError(f"env.{key} must be >= {low}, got {getattr(self, key)}")
        if not 0.0 < self.initial_items <= 1.0:
            raise RewindError(f"env.initial_items must be in (0, 1] (share published at t=0), got {self.initial_items}")
        if not 0.0 <= self.bait_fraction <= 1.0 or not 0.0 <= self.group_weight <= 1.0:
            raise RewindError("env.bait_fraction and env.group_weight must be in [0, 1]")
        for key in ("freshness_decay", "length_median", "watch_shape"):
            if getattr(self, key) <= 0:
                raise RewindError(f"env.{key} must be > 0, got {getattr(self, key)}")
        for key in ("quality_std", "length_sigma"):
            if getattr(self, key) < 0:
                raise RewindError(f"env.{key} must be >= 0, got {getattr(self, key)}")
        if self.slate_size < 0:
            raise RewindError(f"env.slate_size must be >= 0 (0 = one item per step), got {self.slate_size}")
        n0 = max(1, int(math.ceil(self.initial_items * self.n_items)))
        if self.slate_size > n0:
            raise RewindError(f"env.slate_size={self.slate_size} is more than the {n0} items published at t=0 "
                              f"(n_items * initial_items)")
        if not 0.0 < self.slate_position_decay <= 1.0:
            raise RewindError(f"env.slate_position_decay must be in (0, 1], got {self.slate_position_decay}")
        if self.reward not in REWARDS:
            raise RewindError(f"env.reward must be one of {', '.join(REWARDS)}, got {self.reward!r}")


class RecsysObservation(gym.spaces.Box):
    """The flat observation of a recsys env; it tells agents its layout (history length, catalogue size)."""

    def __init__(self, history_len: int, n_items: int):
        super().__init__(-1.0, np.inf, shape=(obs_size(history_len),), dtype=np.float32)
        self.history_len, self.n_items = history_len, n_items


def obs_size(history_len: int) -> int:
    return history_len + N_DEMO + 2


def split_obs(obs, history_len: int, n_items: int):
    """(history ids int64 (-1 = empty), demographics (6,), t / publish_steps, items published)."""
    x = np.asarray(obs, dtype=np.float32).reshape(-1)
    if x.shape[0] != obs_size(history_len):
        raise RewindError(f"recsys observation has {x.shape[0]} values, expected {obs_size(history_len)} "
                          f"for history_len={history_len}")
    hist = np.rint(x[:history_len]).astype(np.int64)
    demo = x[history_len:history_len + N_DEMO]
    return hist, demo, float(x[-2]), int(round(float(x[-1]) * n_items))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class World:
    """The ground truth: catalogue, users, and the click / watch-time model."""

    def __init__(self, cfg: RecsysConfig, seed: int):
        rng = np.random.default_rng(seed)
        n, d, m = cfg.n_items, cfg.latent_dim, cfg.n_users
        self.cfg = cfg
        scale = d ** -0.25                                    # u . v has about unit variance
        self.item_vec = rng.normal(0.0, scale, (n, d))
        self.quality = rng.normal(0.0, cfg.quality_std, n)
        self.bait = (rng.random(n) < cfg.bait_fraction).astype(np.float64)
        self.length = cfg.length_median * np.exp(rng.normal(0.0, cfg.length_sigma, n))
        n0 = max(1, int(math.ceil(cfg.initial_items * n)))
        self.n_initial = n0
        later = np.arange(n - n0) + 1
        self.publish = np.concatenate([np.zeros(n0), later * cfg.publish_steps / max(1, n - n0)])
        self.demo = np.stack([rng.integers(0, N_AGE, m), rng.integers(0, N_GENDER, m)], axis=1)
        centroids = rng.normal(0.0, scale, (N_AGE, N_GENDER, d))
        own = rng.normal(0.0, scale, (m, d))
        g = cfg.group_weight
        self.user_vec = math.sqrt(g) * centroids[self.demo[:, 0], self.demo[:, 1]] + math.sqrt(1 - g) * own
        self.static_logit = cfg.click_bias + self.quality + cfg.bait_click * self.bait
        self.history = np.full((m, cfg.history_len), -1, dtype=np.int64)
        for j in range(m):   # what each user watched before t = 0: its most clicked initial items
            p = self.click_prob(j, 0.0)[:n0]
            self.history[j] = rng.choice(n0, cfg.history_len, replace=n0 < cfg.history_len, p=p / p.sum())

    def n_available(self, t: float) -> int:
        return int(np.searchsorted(self.publish, t, side="right"))

    def click_logit(self, user: int, t: float) -> np.ndarray:
        """Click logit z of every item for `user` at step t (-inf for items not yet published)."""
        cfg = self.cfg
        age = t - self.publish
        z = self.static_logit + self.item_vec @ self.user_vec[user]
        z = z + cfg.freshness_boost * np.exp(-np.maximum(age, 0.0) / cfg.freshness_decay)
        return np.where(age >= 0, z, -np.inf)

    def click_prob(self, user: int, t: float) -> np.ndarray:
        """P(click) of every item for `user` at step t (0 for items not yet published)."""
        z = self.click_logit(user, t)
        return np.where(np.isfinite(z), _sigmoid(np.where(np.isfinite(z), z, 0.0)), 0.0)

    def mean_watch(self, user: int) -> np.ndarray:
        """E[watch time | click] of every item for `user`."""
        aff = self.item_vec @ self.user_vec[user]
        return self.length * _sigmoid(1.0 + aff - self.cfg.bait_watch * self.bait)

    def expected_rewards(self, user: int, t: float) -> np.ndarray:
        """E[reward] of recommending each item to `user` at step t: the oracle behind `info`."""
        p = self.click_prob(user, t)
        return p if self.cfg.reward == "click" else p * self.mean_watch(user)

    # -- slates: a multinomial-logit choice among the slate and a no-click option ---------------
    def _logits_values(self, user: int, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(click logits, mean watch given a click, reward given a click) of every item, kept for
        the last (user, t) asked: one slate step asks three times (best slate, expected reward,
        draw). All depend on (user, t) only, so the cache is exact."""
        key = (int(user), float(t))
        if getattr(self, "_lv_key", None) != key:
            mw = self.mean_watch(user)
            self._lv = (self.click_logit(user, t), mw, np.ones_like(mw) if self.cfg.reward == "click" else mw)
            self._lv_key = key
        return self._lv

    def _slate_logits(self, user: int, t: float, slate: np.ndarray, decay: float) -> np.ndarray:
        pos = np.arange(len(slate)) * math.log(decay)        # exactly 0.0 at position 0
        return self._logits_values(user, t)[0][slate] + pos

    def slate_choice(self, user: int, t: float, slate, decay: float = 1.0) -> np.ndarray:
        """P(the user clicks position p) for p in the slate; 1 - sum is P(no click).

        Multinomial logit with a no-click option of attraction 1: position p's attraction is
        decay**p * exp(z_i), z_i the item's click logit, so a one-item slate is clicked with
        probability sigmoid(z_i), the single-item env's.
        """
        zs = self._slate_logits(user, t, np.asarray(slate, dtype=np.int64), decay)
        m = zs.max()
        if not np.isfinite(m):
            return np.zeros(len(zs))
        e = np.exp(zs - m)
        total = e.sum()
        p_any = _sigmoid(np.array([m + math.log(total)]))[0]  # P(some click) = A / (1 + A)
        return p_any * e / total

    def slate_expected_reward(self, user: int, t: float, slate, decay: float = 1.0) -> float:
        """E[reward] of showing `slate` (ordered) to `user` at step t under the choice model."""
        slate = np.asarray(slate, dtype=np.int64)
        return float(self.slate_choice(user, t, slate, decay) @ self._logits_values(user, t)[2][slate])

    def best_slate(self, user: int, t: float, k: int, decay: float = 1.0) -> tuple[np.ndarray, float]:
        """The ordered k-slate of largest expected reward, exactly (Dinkelbach's iteration).

        E[R(S)] = sum_p b_p w_i r_i / (1 + sum_p b_p w_i) with b_p = decay**p, w_i = exp(z_i).
        R(S) >= V iff sum_p b_p w_i (r_i - V) >= V, and for fixed V that sum is maximised by
        the k largest w_i (r_i - V) in decreasing order (b_p decreasing, rearrangement
        inequality). Iterating V <- R(S*(V)) from V = 0 increases V strictly until no slate
        beats it: the optimum. Not top-k by single-item expected reward in general (MNL items
        compete for one click).
        """
        z, _, values = self._logits_values(user, t)
        live = np.flatnonzero(np.isfinite(z))
        if len(live) < k:
            raise RewindError(f"only {len(live)} items are published at t={t}; a slate needs {k}")
        w, r = np.exp(z[live]), values[live]
        b = decay ** np.arange(k)

        def value(idx):
            a = b * w[idx]
            return float(a @ r[idx] / (1.0 + a.sum()))

        v, best = -math.inf, None
        x = w * r
        for _ in range(100):
            idx = np.argpartition(-x, k - 1)[:k] if k < len(x) else np.arange(len(x))
            idx = idx[np.argsort(-x[idx], kind="stable")]
            val = value(idx)
            if val <= v * (1 + 1e-12) + 1e-15:
                break
            v, best = val, idx
            x = w * (r - v)
        return live[best], v

    def sample_slate(self, user: int, slate, t: float, rng: np.random.Generator,
                     decay: float = 1.0) -> tuple[int, float]:
        """One draw of (clicked position or -1, watch time) for an ordered slate.

        One uniform u decides both: a click iff u < P(some click) (for a one-item slate the
        single-item env's draw, exactly), and the position by where u / P(some click) falls in the
        cumulative choice shares; then the watch time as in ``sample``.
        """
        slate = np.asarray(slate, dtype=np.int64)
        probs = self.slate_choice(user, t, slate, decay)
        p_any = float(probs.sum())          # one item: exactly its sigmoid(z)
        u = rng.random()
        if not u < p_any:
            return -1, 0.0
        pos = min(int(np.searchsorted(np.cumsum(probs) / p_any, u / p_any, side="right")), len(slate) - 1)
        k = self.cfg.watch_shape
        return pos, float(rng.gamma(k, self._logits_values(user, t)[1][slate[pos]] / k))

    def sample(self, user: int, item: int, t: float, rng: np.random.Generator) -> tuple[bool, float]:
        """One draw of (click, watch time) from the ground truth; the env's step uses exactly this."""
        p = float(self.click_prob(user, t)[item])
        clicked = bool(rng.random() < p)
        if not clicked:
            return False, 0.0
        k = self.cfg.watch_shape
        return True, float(rng.gamma(k, self.mean_watch(user)[item] / k))


class RecsysEnv(gym.Env):
    """The recommender bandit; options are the fields of ``RecsysConfig`` (docs/recsys.md)."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode=None, **options):
        from rewind.config import from_dict

        self.cfg = from_dict(RecsysConfig, options, "env")
        self.n_items = self.cfg.n_items
        self.observation_space = RecsysObservation(self.cfg.history_len, self.n_items)
        self.slate_size = self.cfg.slate_size
        self.action_space = (SlateSpace(self.n_items, self.slate_size) if self.slate_size
                             else gym.spaces.Discrete(self.n_items))
        self.render_mode = render_mode
        self.world: World | None = None
        if self.cfg.world_seed is not None:
            self.world = World(self.cfg, self.cfg.world_seed)
        self.t = 0
        self.user: int | None = None
        self._rng: np.random.Generator | None = None

    def _obs(self) -> np.ndarray:
        w, cfg = self.world, self.cfg
        demo = np.zeros(N_DEMO, dtype=np.float32)
        demo[w.demo[self.user, 0]] = 1.0
        demo[N_AGE + w.demo[self.user, 1]] = 1.0
        tail = [self.t / cfg.publish_steps, w.n_available(self.t) / self.n_items]
        return np.concatenate([w.history[self.user].astype(np.float32), demo, np.asarray(tail, np.float32)])

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if seed is not None or self._rng is None:
            s = seed if seed is not None else int(self.np_random.integers(2**31))
            if self.world is None or (seed is not None and self.cfg.world_seed is None):
                self.world = World(self.cfg, s)
            self._rng = np.random.default_rng([s, 1])
            self.t = 0
        self.user = int(self._rng.integers(self.cfg.n_users))
        return self._obs(), {}

    def expected_rewards(self) -> np.ndarray:
        """The oracle's E[reward] of every item for the user shown now (for checks and OPE)."""
        if self.user is None:
            raise RewindError("RecsysEnv: call reset() first")
        return self.world.expected_rewards(self.user, self.t)

    def _slate(self, action) -> np.ndarray:
        """The action as k distinct in-range item ids, or a one-line RewindError (rule: no repeats)."""
        k = self.slate_size
        try:
            slate = np.asarray(action).astype(np.int64, casting="safe").reshape(-1)
        except (TypeError, ValueError):
            raise RewindError(f"a slate is {k} integer item ids, got {action!r}") from None
        if slate.shape != (k,):
            raise RewindError(f"a slate is {k} item ids (env.slate_size), got {slate.shape[0]}: {action!r}")
        if slate.min() < 0 or slate.max() >= self.n_items:
            raise RewindError(f"slate {slate.tolist()} has an item out of range: "
                              f"the catalogue has {self.n_items} items")
        if len(np.unique(slate)) != k:
            raise RewindError(f"slate {slate.tolist()} repeats an item: a slate shows {k} distinct items")
        return slate

    def step(self, action):
        if self.user is None:
            raise RewindError("RecsysEnv: call reset() before step() (each episode is one step)")
        if self.slate_size:
            return self._step_slate(action)
        a = int(action)
        if not 0 <= a < self.n_items:
            raise RewindError(f"action {action!r} out of range: the catalogue has {self.n_items} items")
        obs = self._obs()
        er = self.expected_rewards()
        best = int(np.argmax(er))
        clicked, watch = self.world.sample(self.user, a, self.t, self._rng)
        reward = watch if self.cfg.reward == "watch_time" else float(clicked)
        info = {"click": clicked, "watch_time": watch, "expected_reward": float(er[a]),
                "best_expected_reward": float(er[best]), "best_action": best, "user": self.user, "t": self.t}
        if hasattr(action, "propensity"):   # only a LoggedAction knows it (a NaN would break gymnasium's check_env)
            info["propensity"] = float(action.propensity)
        return self._finish(obs, a if clicked else -1, watch, reward, info)

    def _step_slate(self, action):
        slate = self._slate(action)
        w, decay = self.world, self.cfg.slate_position_decay
        obs = self._obs()
        best, best_value = w.best_slate(self.user, self.t, self.slate_size, decay)
        expected = w.slate_expected_reward(self.user, self.t, slate, decay)
        pos, watch = w.sample_slate(self.user, slate, self.t, self._rng, decay)
        clicked = pos >= 0
        reward = watch if self.cfg.reward == "watch_time" else float(clicked)
        info = {"click": clicked, "watch_time": watch, "chosen": pos, "chosen_item": int(slate[pos]) if clicked else -1,
                "expected_reward": expected, "best_expected_reward": best_value, "best_action": best,
                "user": self.user, "t": self.t}
        if getattr(action, "position_propensities", None) is not None:   # only a LoggedSlate knows them
            info["propensity"] = float(action.propensity)
            info["position_propensities"] = np.asarray(action.position_propensities, dtype=np.float64)
        return self._finish(obs, int(slate[pos]) if clicked else -1, watch, reward, info)

    def _finish(self, obs, clicked_item: int, watch: float, reward: float, info: dict):
        if clicked_item >= 0:   # the watch joins the user's history
            h = self.world.history[self.user]
            h[:-1] = h[1:]
            h[-1] = clicked_item
        self.t += 1
        self.user = None
        return obs, float(reward), True, False, info
