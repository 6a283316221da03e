"""The two-stage YouTube DNN (Covington, Adams, Sargin, RecSys 2016) as a bandit Agent.

Per step, for the user in the observation (rewind/recsys-v0):

1. Candidate generation: the averaged embeddings of the user's watch history, the
   demographics and (``example_age``) the example age go through a ReLU tower to a user
   vector u; every published item scores u . e_i + b_i and the top ``n_candidates`` go on
   (exact maximum inner product over the catalogue: the paper serves by approximate
   nearest-neighbour search, which only makes it faster). Trained on watches (clicked
   impressions drawn in proportion to their watch time; ``positives="click"``: all clicks
   alike, which drifts to clickbait) with a sampled softmax: ``n_negatives`` uniform negatives among all items published by
   training time (the paper's whole corpus), log q corrected; ``negatives="then"`` draws
   them among the items published when the example was logged instead (not in the paper). Example age is (now - logged time) in units of
   the env's ``publish_steps`` at training and ``serve_age`` (paper: 0) at serving.
2. Ranking: a network scores the candidates from its own item embedding, the averaged
   history embedding, the demographics and the item's age (with its sqrt and square, as the
   paper feeds continuous features), and recommends the best.
   ``ranking_head="mlp"``: one task, trained by weighted LR on watch time
   (``ranking_loss="weighted"``: odds ~ expected watch time) or plain click LR ("click").
   ``"shared-bottom" | "omoe" | "mmoe"``: two tasks, click LR and watch-time weighted LR,
   trained together; the recommendation sorts by the task ``ranking_loss`` names.
3. Exploration: with probability ``epsilon`` a uniform item among the published ones;
   the action is a ``LoggedAction`` carrying its propensity eps / n + (1 - eps) [a = greedy].

Slates (env ``slate_size`` k): the ranker's top k, best first; with probability ``epsilon``
the whole slate is a uniform ordered k-subset of the published items instead (a
``LoggedSlate`` with the slate's and each position's propensity, ``explore_slate``). Each
shown item is one impression of the log (clicked: the chosen one; the others: not clicked),
with its position's propensity; the position itself is not a feature (a deviation: the
paper's ranker does not model slates).

Deviations (docs/recsys.md): no search tokens (the env has no queries); the agent learns
item publication times by watching the published count grow; the ranker's item age is a
feature of our choosing (the paper lists "time since last watch" and similar ones).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewind.agents.base import Agent
from rewind.agents.multitask import HEADS, make_head
from rewind.agents.recsys_losses import sampled_softmax_loss, weighted_logistic_loss
from rewind.envs.recsys import N_DEMO, LoggedAction, LoggedSlate, RecsysObservation, SlateSpace, split_obs
from rewind.errors import RewindError

RANKING_LOSSES = ("weighted", "click")
RANKING_HEADS = ("mlp", *HEADS)
NEGATIVES = ("now", "then")
POSITIVES = ("watch", "click")


def recsys_shapes(agent_name: str, observation_space, action_space) -> tuple[int, int, int]:
    """(n_items, history_len, slate_size: 0 for one item) of a recsys env, or a RewindError naming what is wrong."""
    if isinstance(observation_space, RecsysObservation) and isinstance(action_space, SlateSpace) and \
            action_space.n_items == observation_space.n_items:
        return observation_space.n_items, observation_space.history_len, action_space.slate_size
    if not isinstance(observation_space, RecsysObservation) or getattr(action_space, "n", None) != \
            observation_space.n_items:
        raise RewindError(f"{agent_name} needs a rewind/recsys-* env, got observations {observation_space} "
                          f"and actions {action_space}")
    return observation_space.n_items, observation_space.history_len, 0


def explore_slate(rng: np.random.Generator, pool: np.ndarray, greedy: np.ndarray, eps: float) -> LoggedSlate:
    """Slate-level epsilon-greedy: with probability eps a uniform ordered k-subset of `pool`, else `greedy`.

    Propensity of the ordered slate: eps / (n (n-1) ... (n-k+1)) + (1 - eps) [slate = greedy];
    of position p showing its item: eps / n + (1 - eps) [item = greedy_p].
    """
    n, k = len(pool), len(greedy)
    slate = pool[rng.choice(n, k, replace=False)] if rng.random() < eps else greedy
    same = slate == greedy
    return LoggedSlate(slate, eps / math.perm(n, k) + (1 - eps) * bool(same.all()), eps / n + (1 - eps) * same)


def slate_feedback(slate, info: dict) -> tuple[np.ndarray, np.ndarray]:
    """(click, watch time) of each slate position from the env's info: only the chosen one has feedback."""
    if "chosen" not in info:
        raise RewindError("a slate learner reads info['chosen'] (the clicked position); use a rewind/recsys-slate env")
    k = len(slate)
    click, watch = np.zeros(k, np.float32), np.zeros(k, np.float32)
    if info["chosen"] >= 0:
        click[info["chosen"]], watch[info["chosen"]] = 1.0, float(info["watch_time"])
    return click, watch


class ImpressionLog:
    """Ring of logged impressions: user context, time, item, click, watch time, propensity."""

    def __init__(self, capacity: int, history_len: int):
        self.hist = np.full((capacity, history_len), -1, dtype=np.int64)
        self.demo = np.zeros((capacity, N_DEMO), dtype=np.float32)
        self.t = np.zeros(capacity, dtype=np.float32)
        self.n_avail = np.zeros(capacity, dtype=np.int64)
        self.item = np.zeros(capacity, dtype=np.int64)
        self.click = np.zeros(capacity, dtype=np.float32)
        self.watch = np.zeros(capacity, dtype=np.float32)
        self.prop = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.size, self.pos = capacity, 0, 0

    _FIELDS = ("hist", "demo", "t", "n_avail", "item", "click", "watch", "prop")

    def add(self, hist, demo, t, n_avail, item, click, watch, prop) -> None:
        i = self.pos
        for name, v in zip(self._FIELDS, (hist, demo, t, n_avail, item, click, watch, prop)):
            getattr(self, name)[i] = v
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict:
        return {**{f: getattr(self, f)[:self.size].copy() for f in self._FIELDS}, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        n = len(s["item"])
        for f in self._FIELDS:
            getattr(self, f)[:n] = s[f]
        self.size, self.pos = n, int(s["pos"])


def _mean_embedding(emb: nn.Embedding, hist: torch.Tensor, pad: int) -> torch.Tensor:
    """Average embedding of the watched items (empty slots, id -1, are left out)."""
    ids = torch.where(hist < 0, torch.full_like(hist, pad), hist)
    n = (hist >= 0).sum(1, keepdim=True).clamp(min=1)
    return emb(ids).sum(1) / n


class CandidateModel(nn.Module):
    """User tower (history average, demographics, example age) -> u; item output embeddings."""

    def __init__(self, n_items: int, dim: int, hidden: tuple[int, ...], example_age: bool):
        super().__init__()
        self.n_items, self.example_age = n_items, example_age
        self.history_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        layers, n_in = [], dim + N_DEMO + (1 if example_age else 0)
        for h in (*hidden, dim):
            layers += [nn.Linear(n_in, h), nn.ReLU()]
            n_in = h
        self.tower = nn.Sequential(*layers)
        self.item_emb = nn.Parameter(torch.randn(n_items, dim) * dim ** -0.5)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def user(self, hist: torch.Tensor, demo: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        parts = [_mean_embedding(self.history_emb, hist, self.n_items), demo]
        if self.example_age:
            parts.append(age[:, None])
        return self.tower(torch.cat(parts, 1))


class RankingModel(nn.Module):
    """Scores (user, item) pairs; output (B, tasks): task 0 click logit, task 1 watch-time logit."""

    def __init__(self, n_items: int, dim: int, head: str, hidden: int, n_experts: int, expert_units: int,
                 tower: int):
        super().__init__()
        self.n_items = n_items
        self.emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        n_in = 2 * dim + N_DEMO + 3
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, tower), nn.ReLU(),
                                      nn.Linear(tower, 1))
        else:
            self.head = make_head(head, n_in, 2, n_experts=n_experts, expert_units=expert_units, tower=tower)

    def forward(self, hist, demo, items, item_age) -> torch.Tensor:
        """hist (B, H), demo (B, 6), items (B,), item_age (B,) -> (B, 1 or 2) logits."""
        age = item_age.clamp(min=0.0)[:, None]
        x = torch.cat([self.emb(items), _mean_embedding(self.emb, hist, self.n_items), demo,
                       age, age.sqrt(), age ** 2], 1)
        return self.head(x)


class YouTubeDNNAgent(Agent):
    """Candidate generation + ranking + epsilon-uniform exploration (module docstring)."""

    @dataclasses.dataclass
    class Config:
        example_age: bool = True
        ranking_loss: str = "weighted"     # "weighted" (watch-time weighted LR) or "click"
        ranking_head: str = "mlp"          # "mlp" (one task) or "shared-bottom" | "omoe" | "mmoe" (two tasks)
        embed_dim: int = 16
        cand_hidden: tuple[int, ...] = (64,)
        n_negatives: int = 50
        n_candidates: int = 50
        rank_hidden: int = 32              # width of the "mlp" ranking head
        n_experts: int = 4                 # experts of omoe / mmoe; shared-bottom matches their size
        expert_units: int = 16
        tower: int = 8
        serve_age: float = 0.0             # example age fed at serving (paper: 0 or slightly negative)
        positives: str = "watch"           # candidate positives: clicks drawn in proportion to watch time
                                           # ("watch", the paper trains on watches) or every click alike
        negatives: str = "now"             # sample negatives among items published by training time ("now",
                                           # the paper's whole corpus) or by the example's time ("then")
        epsilon: float = 0.05
        lr: float = 3e-3
        batch_size: int = 128
        train_every: int = 10              # env steps between training steps
        learning_starts: int = 500         # uniform recommendations until this many impressions
        buffer_size: int = 100_000

        def validate(self):
            if self.ranking_loss not in RANKING_LOSSES:
                raise RewindError(f"agent.ranking_loss must be one of {', '.join(RANKING_LOSSES)}, "
                                  f"got {self.ranking_loss!r}")
            if self.positives not in POSITIVES:
                raise RewindError(f"agent.positives must be one of {', '.join(POSITIVES)}, got {self.positives!r}")
            if self.negatives not in NEGATIVES:
                raise RewindError(f"agent.negatives must be one of {', '.join(NEGATIVES)}, got {self.negatives!r}")
            if self.ranking_head not in RANKING_HEADS:
                raise RewindError(f"agent.ranking_head must be one of {', '.join(RANKING_HEADS)}, "
                                  f"got {self.ranking_head!r}")
            for key in ("embed_dim", "n_negatives", "n_candidates", "rank_hidden", "n_experts", "expert_units",
                        "tower", "batch_size", "train_every", "buffer_size"):
                if getattr(self, key) < 1:
                    raise RewindError(f"agent.{key} must be >= 1, got {getattr(self, key)}")
            if any(h < 1 for h in self.cand_hidden):
                raise RewindError(f"agent.cand_hidden sizes must be >= 1, got {list(self.cand_hidden)}")
            if not 0.0 <= self.epsilon <= 1.0 or self.lr <= 0 or self.learning_starts < 0:
                raise RewindError("agent.epsilon must be in [0, 1], agent.lr > 0, agent.learning_starts >= 0")

    def __init__(self, observation_space, action_space, config=None, *, seed: int = 0, frame_stack: int = 1):
        super().__init__(observation_space, action_space, config, seed=seed, frame_stack=frame_stack)
        c = self.config
        self.n_items, self.history_len, self.slate_size = recsys_shapes("youtube-dnn", observation_space,
                                                                        action_space)
        if self.slate_size > c.n_candidates:
            raise RewindError(f"agent.n_candidates={c.n_candidates} is fewer than the env's slate of {self.slate_size}")
        self.rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.cand = CandidateModel(self.n_items, c.embed_dim, tuple(c.cand_hidden), c.example_age)
            self.rank = RankingModel(self.n_items, c.embed_dim, c.ranking_head, c.rank_hidden, c.n_experts,
                                     c.expert_units, c.tower)
        self.opt = torch.optim.Adam([*self.cand.parameters(), *self.rank.parameters()], lr=c.lr)
        self.log = ImpressionLog(c.buffer_size, self.history_len)
        self.first_seen = np.full(self.n_items, np.nan, dtype=np.float32)   # time each id was first published
        self.steps = 0
        self.train_steps = 0
        self._prop = 1.0

    # -- serving ----------------------------------------------------------------------------
    @property
    def _n_now(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.first_seen)))

    def _see(self, n_avail: int, t: float) -> None:
        new = np.isnan(self.first_seen[:n_avail])
        self.first_seen[:n_avail][new] = t

    def _context(self, obs):
        hist, demo, t, n_avail = split_obs(obs, self.history_len, self.n_items)
        if not 1 <= n_avail <= self.n_items:
            raise RewindError(f"observation says {n_avail} items are published; the catalogue has {self.n_items}")
        self._see(n_avail, t)
        return hist, demo, t, n_avail

    @torch.no_grad()
    def candidates(self, obs, k: int | None = None) -> np.ndarray:
        """The candidate generator's top-k published items for this observation, best first."""
        hist, demo, t, n_avail = self._context(obs)
        k = min(k or self.config.n_candidates, n_avail)
        u = self.cand.user(torch.from_numpy(hist)[None], torch.from_numpy(demo)[None],
                           torch.tensor([self.config.serve_age], dtype=torch.float32))[0]
        scores = (self.cand.item_emb[:n_avail] @ u + self.cand.item_bias[:n_avail]).numpy()
        top = np.argpartition(-scores, k - 1)[:k] if k < n_avail else np.arange(n_avail)
        return top[np.argsort(-scores[top], kind="stable")]

    @torch.no_grad()
    def _rank_scores(self, hist, demo, t, items: np.ndarray) -> np.ndarray:
        n = len(items)
        z = self.rank(torch.from_numpy(hist)[None].expand(n, -1), torch.from_numpy(demo)[None].expand(n, -1),
                      torch.from_numpy(items), torch.from_numpy(t - self.first_seen[items]))
        task = 0 if (z.shape[1] == 2 and self.config.ranking_loss == "click") else z.shape[1] - 1
        return z[:, task].numpy()

    def act(self, obs, explore: bool = True):
        hist, demo, t, n_avail = self._context(obs)
        eps = self.config.epsilon if explore else 0.0
        if self.log.size < self.config.learning_starts and explore:
            eps = 1.0
        k = self.slate_size
        if k:   # a slate: the ranker's top k, best first
            greedy = np.arange(k)
            if eps < 1.0:
                items = self.candidates(obs)
                greedy = items[np.argsort(-self._rank_scores(hist, demo, t, items), kind="stable")[:k]]
            slate = explore_slate(self.rng, np.arange(n_avail), greedy, eps)
            self._prop = slate.propensity
            return slate
        greedy = -1
        if eps < 1.0:
            items = self.candidates(obs)
            greedy = int(items[np.argmax(self._rank_scores(hist, demo, t, items))])
        a = int(self.rng.integers(n_avail)) if self.rng.random() < eps else greedy
        self._prop = eps / n_avail + (1.0 - eps) * (a == greedy)
        return LoggedAction(a, self._prop)

    # -- learning ---------------------------------------------------------------------------
    def observe(self, obs, action, reward, next_obs, terminated, truncated, info) -> None:
        hist, demo, t, n_avail = self._context(obs)
        info = info or {}
        if "click" not in info or "watch_time" not in info:
            raise RewindError("youtube-dnn learns from the click and watch-time feedback in info; "
                              "use a rewind/recsys-* env")
        if self.slate_size:   # one impression per shown item, logged with its position's propensity
            slate = np.asarray(action, dtype=np.int64).reshape(-1)
            click, watch = slate_feedback(slate, info)
            props = getattr(action, "position_propensities", None)
            props = np.full(len(slate), np.nan) if props is None else props
            for i in range(len(slate)):
                self.log.add(hist, demo, t, n_avail, int(slate[i]), click[i], watch[i], float(props[i]))
        else:
            prop = float(getattr(action, "propensity", self._prop))
            self.log.add(hist, demo, t, n_avail, int(action), float(info["click"]), float(info["watch_time"]), prop)
        self.steps += 1

    def update(self) -> dict[str, float]:
        c = self.config
        if self.log.size < c.learning_starts or self.steps % c.train_every:
            return {}
        return self.train_step()

    def _candidate_loss(self, now: float) -> torch.Tensor | None:
        L = self.log
        clicked = np.flatnonzero(L.click[:L.size] > 0)
        if len(clicked) == 0:
            return None
        if self.config.positives == "watch" and L.watch[clicked].sum() > 0:
            w = L.watch[clicked].astype(np.float64)
            rows = clicked[self.rng.choice(len(clicked), size=self.config.batch_size, p=w / w.sum())]
        else:
            rows = clicked[self.rng.integers(len(clicked), size=self.config.batch_size)]
        n_avail = L.n_avail[rows] if self.config.negatives == "then" else np.full(len(rows), self._n_now)
        neg = (self.rng.random((len(rows), self.config.n_negatives)) * n_avail[:, None]).astype(np.int64)
        log_q = torch.from_numpy(-np.log(n_avail).astype(np.float32))
        age = torch.from_numpy((now - L.t[rows]).astype(np.float32))
        u = self.cand.user(torch.from_numpy(L.hist[rows]), torch.from_numpy(L.demo[rows]), age)
        return sampled_softmax_loss(u, self.cand.item_emb, self.cand.item_bias, torch.from_numpy(L.item[rows]),
                                    torch.from_numpy(neg), log_q, log_q[:, None].expand(-1, neg.shape[1]))

    def _ranking_loss(self) -> torch.Tensor:
        L = self.log
        rows = self.rng.integers(L.size, size=self.config.batch_size)
        items = L.item[rows]
        z = self.rank(torch.from_numpy(L.hist[rows]), torch.from_numpy(L.demo[rows]), torch.from_numpy(items),
                      torch.from_numpy(L.t[rows] - self.first_seen[items]))
        click, watch = torch.from_numpy(L.click[rows]), torch.from_numpy(L.watch[rows])
        if z.shape[1] == 2:
            return F.binary_cross_entropy_with_logits(z[:, 0], click) + weighted_logistic_loss(z[:, 1], click, watch)
        if self.config.ranking_loss == "weighted":
            return weighted_logistic_loss(z[:, 0], click, watch)
        return F.binary_cross_entropy_with_logits(z[:, 0], click)

    def train_step(self) -> dict[str, float]:
        """One Adam step on both stages, from minibatches of the impression log."""
        if self.log.size == 0:
            return {}
        now = float(self.log.t[(self.log.pos - 1) % self.log.capacity])
        cand = self._candidate_loss(now)
        rank = self._ranking_loss()
        loss = rank if cand is None else rank + cand
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.train_steps += 1
        out = {"rank_loss": rank.item()}
        if cand is not None:
            out["cand_loss"] = cand.item()
        return out

    def live_metrics(self) -> dict[str, float]:
        return {"propensity": self._prop}

    def state_dict(self) -> dict:
        return {"cand": self.cand.state_dict(), "rank": self.rank.state_dict(), "opt": self.opt.state_dict(),
                "log": self.log.state_dict(), "first_seen": self.first_seen.copy(), "steps": self.steps,
                "train_steps": self.train_steps, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.cand.load_state_dict(state["cand"])
        self.rank.load_state_dict(state["rank"])
        self.opt.load_state_dict(state["opt"])
        self.log.load_state_dict(state["log"])
        self.first_seen = np.array(state["first_seen"], dtype=np.float32)
        self.steps, self.train_steps = int(state["steps"]), int(state["train_steps"])
        self.rng.bit_generator.state = state["rng"]
