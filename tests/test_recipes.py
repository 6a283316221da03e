"""Bag of Tricks recipe (agents/recipes.py) and local error signals (agents/local_loss.py):
the formulas at given steps, and the learners honouring them."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rewind.agents import make_agent
from rewind.agents.bandit_neural import EpsGreedyNeuralAgent, SupervisedAgent
from rewind.agents.local_loss import similarity_matrix, sim_loss
from rewind.agents.recipes import decay_groups, mixup, scheduled_lr, smooth_labels, soft_cross_entropy
from rewind.envs import make_env
from rewind.errors import RewindError

torch.set_num_threads(1)


# ------------------------------------------------------------------ formulas at given steps
@pytest.mark.parametrize("step,expected", [
    (0, 0.1 * 1 / 5), (2, 0.1 * 3 / 5), (4, 0.1),                       # warmup: i * eta / m, i = step + 1
    (5, 0.1), (5 + 25, 0.5 * (1 + math.cos(math.pi * 25 / 100)) * 0.1),  # cosine from t = 0 after warmup
    (5 + 50, 0.05), (5 + 100, 0.0), (5 + 400, 0.0),
])
def test_warmup_cosine_lr_matches_the_formula(step, expected):
    assert scheduled_lr(step, 0.1, warmup_steps=5, schedule="cosine", decay_steps=100) == pytest.approx(expected)


def test_constant_schedule_and_refusals():
    assert scheduled_lr(3, 0.2, warmup_steps=4) == pytest.approx(0.2)
    assert scheduled_lr(1000, 0.2) == 0.2
    with pytest.raises(RewindError):
        scheduled_lr(0, 0.1, schedule="step")
    with pytest.raises(RewindError, match="lr_decay_steps"):
        scheduled_lr(0, 0.1, schedule="cosine", decay_steps=0)


def test_label_smoothing_is_he_et_al_eq3():
    q = smooth_labels(torch.tensor([2, 0]), 4, 0.1)
    expected = torch.tensor([[0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3], [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]])
    assert torch.allclose(q, expected)
    assert torch.allclose(q.sum(1), torch.ones(2))
    z = torch.tensor([[0.3, -1.0, 2.0, 0.5]])
    manual = -(expected[0] * torch.log_softmax(z[0], 0)).sum()
    assert soft_cross_entropy(z, q[:1]).item() == pytest.approx(manual.item())


def test_mixup_matches_its_formula():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [-1.0, 0.0]])
    y = torch.eye(3)
    perm = torch.tensor([2, 0, 1])
    xm, ym = mixup(x, y, 0.7, perm)
    assert torch.allclose(xm[1], 0.7 * x[1] + 0.3 * x[0])
    assert torch.allclose(ym[0], torch.tensor([0.7, 0.0, 0.3]))


def test_no_bias_decay_groups():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    g = decay_groups(net.named_parameters(), 1e-4, True)
    assert [len(x["params"]) for x in g] == [2, 4] and g[1]["weight_decay"] == 0.0
    assert len(decay_groups(net.named_parameters(), 1e-4, False)) == 1


# ------------------------------------------------------------------ the learners honour them
def _xy(n=16, d=6, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _supervised(**cfg):
    env = make_env("rewind/bandit-iris-v0", {"full_feedback": True}, seed=0)
    c = dataclasses.replace(SupervisedAgent.Config(), hidden=(8, 8), **cfg)
    c.validate()
    return SupervisedAgent(env.observation_space, env.action_space, c, seed=0)


def test_supervised_learner_steps_at_the_scheduled_lr():
    agent = _supervised(lr=0.01, lr_warmup_steps=2, lr_schedule="cosine", lr_decay_steps=4)
    x, y = torch.randn(8, agent.dim), torch.randint(0, agent.n_arms, (8,))
    seen = []
    for _ in range(7):
        agent._supervised_step(x, y)
        seen.append(agent.opt.param_groups[0]["lr"])
    want = [scheduled_lr(s, 0.01, 2, "cosine", 4) for s in range(7)]
    assert seen == pytest.approx(want) and seen[0] == pytest.approx(0.005) and seen[-1] == 0.0


def test_supervised_learner_uses_the_smoothed_loss():
    # with lr tiny the loss reported is the loss of the pre-step weights: compare with a manual CE
    agent = _supervised(label_smoothing=0.2)
    x, y = 30 * torch.randn(8, agent.dim), torch.randint(0, agent.n_arms, (8,))   # confident logits
    with torch.no_grad():
        z = agent.net(x)[0]
    manual = soft_cross_entropy(z, smooth_labels(y, agent.n_arms, 0.2)).mean().item()
    plain = F.cross_entropy(z, y).item()
    got = agent._supervised_step(x, y)
    assert got == pytest.approx(manual, rel=1e-5) and abs(got - plain) > 1e-3


def test_recipe_refusals():
    with pytest.raises(RewindError, match="zero_gamma"):
        SupervisedAgent.Config(zero_gamma=True).validate()
    with pytest.raises(RewindError, match="cb_loss=softmax"):
        SupervisedAgent.Config(cb_loss="focal", label_smoothing=0.1).validate()
    with pytest.raises(RewindError, match="lr_decay_steps"):
        SupervisedAgent.Config(lr_schedule="cosine").validate()
    with pytest.raises(RewindError, match="no_bias_decay"):
        SupervisedAgent.Config(no_bias_decay=True).validate()
    with pytest.raises(RewindError, match="class labels"):
        EpsGreedyNeuralAgent.Config(local_loss="sim").validate()


@pytest.mark.parametrize("cfg", [{"mixup_alpha": 0.2, "label_smoothing": 0.1, "weight_decay": 1e-4, "no_bias_decay": True},
                                 {"local_loss": "pred"}])
@pytest.mark.parametrize("name", ["eps-greedy-neural", "bootstrap-ts"])
def test_bandit_learners_train_with_the_recipe(name, cfg):
    env = make_env("rewind/bandit-iris-v0", seed=0)
    agent = make_agent(name, env, {"batch_size": 8, **cfg}, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        m = agent.update()
        obs, _ = env.reset()
    assert np.isfinite(m["loss"]) and agent.updates == 30


# ------------------------------------------------------------------ local error signals
def test_sim_loss_is_zero_when_the_similarity_matrices_match():
    y = torch.tensor([0, 1, 0, 2, 1])
    onehot = F.one_hot(y, 3).float()
    h = 2.5 * onehot[:, [2, 0, 1]] + 0.7   # same geometry: columns permuted, scaled, shifted
    assert torch.allclose(similarity_matrix(h), similarity_matrix(onehot), atol=1e-4)
    assert sim_loss(h, onehot).item() < 1e-8
    assert sim_loss(torch.randn(5, 6), onehot).item() > 1e-3


def test_similarity_matrix_reduces_conv_outputs_to_the_spatial_std():
    x = torch.randn(4, 5, 3, 3)
    assert torch.allclose(similarity_matrix(x), similarity_matrix(x.flatten(2).std(2)))


@pytest.mark.parametrize("kind", ["pred", "sim", "predsim", "pred-bpf", "predsim-bpf"])
def test_no_gradient_crosses_layers(kind):
    """One step whose only loss is layer 2's local loss (output loss zeroed) leaves layer 1 unchanged,
    while layer 2 moves; with global backprop the same step moves layer 1."""
    agent = _supervised(local_loss=kind, lr=0.05)
    x, y = torch.randn(16, agent.dim), torch.randint(0, agent.n_arms, (16,))
    w0 = [w.detach().clone() for w in agent.net.weights]
    agent._step(x, lambda z: 0.0 * z.sum(), lambda k, h: _only_layer(k, 1, agent, h, y, kind))
    assert torch.equal(agent.net.weights[0], w0[0])              # layer 1 (index 0) untouched
    assert not torch.equal(agent.net.weights[1], w0[1])          # layer 2 trained by its own loss
    assert torch.equal(agent.net.weights[2], w0[2])              # output loss was zero
    # control: the same loss at layer 2 with gradient allowed through reaches layer 1
    ctrl = _supervised(lr=0.05)
    w_before = ctrl.net.weights[0].detach().clone()
    h1 = torch.relu(torch.baddbmm(ctrl.net.biases[0], x.unsqueeze(0), ctrl.net.weights[0]))
    h2 = torch.relu(torch.baddbmm(ctrl.net.biases[1], h1, ctrl.net.weights[1]))
    ctrl.opt.zero_grad()
    h2.pow(2).sum().backward()
    ctrl.opt.step()
    assert not torch.equal(ctrl.net.weights[0], w_before)


def _only_layer(k, which, agent, h, y, kind):
    """The learner's real local loss at layer `which`, zero elsewhere."""
    if k != which:
        return 0.0 * h.sum()
    from rewind.agents.local_loss import pred_loss
    if kind.startswith("pred"):
        return pred_loss(agent.local.pred(k, h)[0], y) if not kind.endswith("bpf") else agent.local.pred(k, h).pow(2).mean()
    return sim_loss(torch.bmm(h, agent.local.sim_w[k])[0], F.one_hot(y, agent.n_arms).float())


@pytest.mark.parametrize("kind", ["pred", "sim", "predsim", "pred-bpf", "predsim-bpf"])
def test_local_loss_learners_learn_iris(kind):
    env = make_env("rewind/bandit-iris-v0", {"full_feedback": True}, seed=0)
    agent = make_agent("supervised", env, {"batch_size": 16, "hidden": [16, 16], "lr": 3e-3, "local_loss": kind}, seed=0)
    obs, _ = env.reset(seed=0)
    hits = []
    for _ in range(400):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        hits.append(r)
        obs, _ = env.reset()
    assert np.mean(hits[-150:]) > 0.6   # 3 classes: chance 1/3


@pytest.mark.parametrize("name", ["dqn", "ebu", "ebu-adaptive"])
def test_dqn_and_ebu_step_at_the_scheduled_lr(name):
    env = make_env("CartPole-v1", seed=0)
    agent = make_agent(name, env, {"learning_starts": 20, "batch_size": 4, "update_every": 1, "hidden": [8], "lr": 1e-3,
                                   "lr_schedule": "cosine", "lr_warmup_steps": 3, "lr_decay_steps": 10}, seed=0)
    agent.config.validate()
    obs, _ = env.reset(seed=0)
    seen = {}
    for _ in range(120):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        before = agent.updates
        agent.update()
        if agent.updates == before + 1:   # one gradient update: it ran at the lr of step `before`
            seen[before] = [o.param_groups[0]["lr"] for _, o in agent.learners_and_optimizers()]
        obs = env.reset()[0] if term or trunc else nxt
    assert len(seen) >= 14
    for step, lrs in seen.items():
        assert lrs == pytest.approx([scheduled_lr(step, 1e-3, 3, "cosine", 10)] * len(lrs))
    with pytest.raises(RewindError, match="lr_decay_steps"):
        agent.Config(lr_decay_steps=5).validate()


# ------------------------------------------------------------------ ENAS retraining (run/search.py retrain)
def test_retrain_lr_is_warmup_then_cosine_to_lr_min():
    from rewind.run.search import SearchConfig, retrain_lr

    cfg = SearchConfig(retrain_epochs=10, retrain_warmup_epochs=2, retrain_lr=0.1, retrain_lr_min=0.01)
    steps = 100                                    # 10 batches per epoch: 20 warmup batches
    assert [retrain_lr(i, cfg, steps) for i in (0, 9, 19)] == pytest.approx([0.1 / 20, 0.1 / 2, 0.1])
    assert retrain_lr(20 + 40, cfg, steps) == pytest.approx(0.01 + 0.5 * (1 + math.cos(math.pi * 40 / 80)) * 0.09)
    # without warmup: torch's CosineAnnealingLR, the schedule the retraining had before the recipe
    plain = SearchConfig(retrain_epochs=10, retrain_lr=0.1, retrain_lr_min=0.01)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.01)
    for i in range(steps):
        assert retrain_lr(i, plain, steps) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    with pytest.raises(RewindError, match="retrain_warmup_epochs"):
        SearchConfig(retrain_epochs=3, retrain_warmup_epochs=4).validate()
    with pytest.raises(RewindError, match="retrain_label_smoothing"):
        SearchConfig(retrain_label_smoothing=1.0).validate()


def test_recipe_keys_reach_the_retraining_of_a_derived_architecture(tmp_path, monkeypatch):
    """`rewind search --arch A --set search.retrain_*`: each batch steps at the scheduled lr, biases
    are not decayed, and the loss targets are smoothed and mixed."""
    import json

    import rewind.run.search as search
    from rewind.cli.search import main as search_main
    from rewind.controllers.search_spaces import make_space

    space = make_space("mlp", layers=2, widths=(8, 16, 32, 64))
    (tmp_path / "arch.json").write_text(json.dumps(space.to_json(space.random(np.random.default_rng(0)))))
    seen = {"lr": [], "groups": None, "targets": []}

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            seen["lr"].append(self.param_groups[0]["lr"])
            seen["groups"] = [(len(g["params"]), g["weight_decay"]) for g in self.param_groups]
            return super().step(closure)

    def recording_ce(logits, q):
        seen["targets"].append(q.detach().clone())
        return soft_cross_entropy(logits, q)

    monkeypatch.setattr(search.torch.optim, "SGD", RecordingSGD)
    monkeypatch.setattr(search, "soft_cross_entropy", recording_ce)
    argv = ["search", "--space", "mlp", "--data", "digits", "--arch", str(tmp_path / "arch.json"),
            "--set", "space.layers=2", "--set", "space.widths=[8,16,32,64]", "--retrain-epochs", "2",
            "--set", "search.retrain_batch=256", "--set", "search.retrain_warmup_epochs=1",
            "--set", "search.retrain_no_bias_decay=true", "--set", "search.retrain_label_smoothing=0.1",
            "--set", "search.retrain_mixup_alpha=0.2", "--no-progress"]
    assert search_main(argv) == 0
    cfg = search.SearchConfig(retrain_epochs=2, retrain_warmup_epochs=1)
    n = len(seen["lr"])
    assert n >= 4 and seen["lr"] == pytest.approx([search.retrain_lr(i, cfg, n) for i in range(n)])
    assert seen["lr"][0] < seen["lr"][n // 2 - 1]                   # warming up
    (n_decay, wd), (n_free, wd0) = seen["groups"]                   # weights decayed, biases not
    from rewind.envs.nas_data import load_digits_data
    model = space.build(space.encode(json.loads((tmp_path / "arch.json").read_text())["arch"]),
                        **load_digits_data().model_kwargs())
    one_d = sum(p.ndim <= 1 for p in model.parameters())
    assert one_d > 0 and (n_decay, n_free) == (len(list(model.parameters())) - one_d, one_d)
    assert wd == cfg.retrain_weight_decay and wd0 == 0.0
    q = torch.cat(seen["targets"])
    assert q.sum(1) == pytest.approx(torch.ones(len(q)))
    assert q.min() >= 0.1 / 9 - 1e-6 and q.max() <= 0.9 + 1e-6     # smoothed: no 0 and no 1
    assert not torch.isclose(q, torch.tensor(0.9)).any(1).all()     # and mixed: not every row is one smoothed label


# ------------------------------------------------------------------ the memory meter of the local-loss cost study
def test_saved_activation_peak_grows_with_depth_under_backprop_but_not_with_local_losses():
    """bench/studies/training_methods.py: SavedActivationPeak counts what autograd keeps for
    backward; a layer-local loss frees each layer's graph before the next, backprop keeps all."""
    from rewind.bench.studies.training_methods import SavedActivationPeak

    torch.manual_seed(0)
    x = torch.randn(16, 32)

    def peak(depth: int, local: bool) -> tuple[int, int]:
        layers = [torch.nn.Linear(32, 32) for _ in range(depth)]
        meter = SavedActivationPeak([p for m in layers for p in m.parameters()])
        with meter.hooks():
            h = x
            for layer in layers:
                h = torch.relu(layer(h.detach() if local else h))
                if local:
                    h.pow(2).mean().backward()
            if not local:
                h.pow(2).mean().backward()
        return meter.peak, meter.live

    act = 16 * 32 * 4                                                  # bytes of one activation
    (b2, live_b), (b6, _), (l2, live_l), (l6, _) = peak(2, False), peak(6, False), peak(2, True), peak(6, True)
    assert live_b == live_l == 0                                       # everything released after backward
    assert b6 - b2 >= 4 * act                                          # each extra layer keeps >= 1 activation
    assert l6 == l2 and l6 < b6                                        # local: one layer's graph at a time



# ------------------------------------------------------------------ local losses in ENAS retraining
def _child(space_name):
    """A stand-alone child of each CNN/MLP space whose every unit has trainable weights, and a map
    from parameter name to unit (0 = stem for the CNNs)."""
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas_data import load_digits_data

    kw = load_digits_data().model_kwargs()
    if space_name == "macro":
        space = make_space("macro", layers=3, channels=8, pools=1)
        arch = space.encode([{"op": "conv3x3", "skip": []}, {"op": "conv5x5", "skip": [0]},
                             {"op": "conv3x3", "skip": [0, 1]}])
        unit = lambda n: 0 if n.startswith("stem") else int(n.split(".")[1]) + 1   # ops.i / norms.i
    elif space_name == "micro":
        space = make_space("micro", nodes=2, channels=8, cells=1)
        arch = space.random(np.random.default_rng(3))
        unit = lambda n: 0 if n.startswith("stem") else int(n.split(".")[1]) + 1   # cells.i
    else:
        space = make_space("mlp", layers=3, widths=(8, 16))
        arch = space.random(np.random.default_rng(0))
        unit = lambda n: int(n.split(".")[1])                                      # weights.i, biases.i, norms.i
    torch.manual_seed(0)
    return space.build(arch, **kw), unit


def _units_with_grad(model, unit) -> set:
    return {unit(n) for n, p in model.named_parameters()
            if not n.startswith("head") and p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("space_name", ["macro", "micro", "mlp"])
@pytest.mark.parametrize("kind", ["pred", "predsim-bpf"])
def test_enas_child_local_loss_reaches_only_its_own_unit(space_name, kind):
    """search.retrain_local_loss: the local loss of the last hidden unit k gives gradients to unit k
    alone; the same loss on the undetached graph reaches the units below (so the check can fail)."""
    from rewind.envs.nas_data import load_digits_data
    from rewind.run.search import SearchConfig, local_heads, local_step

    model, unit = _child(space_name)
    data = load_digits_data()
    x, y = torch.as_tensor(data.train_x[:32]).float(), torch.as_tensor(data.train_y[:32]).long()
    heads = local_heads(model, x, data.n_classes, SearchConfig(retrain_local_loss=kind))
    k = len(heads.pred) - 1
    step_k = local_step(heads, y)
    model(x, local=lambda i, h: step_k(i, h) if i == k else h.detach())
    assert _units_with_grad(model, unit) == {k}

    model.zero_grad()
    kept = {}
    model(x, local=lambda i, h: kept.setdefault(i, h))           # no detach: the whole graph
    heads.loss(k, F.relu(kept[k]) if kept[k].dim() == 4 else kept[k], y).backward()
    assert _units_with_grad(model, unit) == set(range(k + 1))


@pytest.mark.parametrize("kind", ["pred", "predsim"])
def test_retrain_with_local_losses_learns_digits(tmp_path, kind):
    """`rewind search --arch A --set search.retrain_local_loss=K` retrains every unit by its own
    loss and the head by the global one, well above chance (0.1)."""
    import json

    from rewind.cli.search import main as search_main
    from rewind.controllers.search_spaces import make_space

    space = make_space("mlp", layers=2, widths=(32, 64))
    (tmp_path / "arch.json").write_text(json.dumps(space.to_json(space.random(np.random.default_rng(0)))))
    argv = ["search", "--space", "mlp", "--data", "digits", "--arch", str(tmp_path / "arch.json"),
            "--set", "space.layers=2", "--set", "space.widths=[32,64]", "--retrain-epochs", "3",
            "--set", "search.retrain_batch=64", "--set", f"search.retrain_local_loss={kind}",
            "--logdir", str(tmp_path / "run"), "--no-progress"]
    assert search_main(argv) == 0
    saved = json.loads((tmp_path / "run" / "retrain.json").read_text())
    assert saved["settings"]["search"]["retrain_local_loss"] == kind
    assert saved["result"]["test_accuracy"] > 0.6


def test_retrain_local_loss_refusals(tmp_path):
    from rewind.controllers.search_spaces import make_space
    from rewind.envs.nas_data import load_ptb
    from rewind.run.search import SearchConfig, local_heads, retrain

    for bad, match in [({"retrain_local_loss": "pred-sim"}, "retrain_local_loss must be one of"),
                       ({"retrain_local_loss": "pred", "retrain_mixup_alpha": 0.2}, "mixup"),
                       ({"retrain_local_loss": "pred", "retrain_local_beta": 0.5}, "retrain_local_beta"),
                       ({"retrain_local_loss": "pred", "retrain_local_proj": 64}, "retrain_local_proj"),
                       ({"retrain_local_max_features": 1}, "applies only with a retrain_local_loss")]:
        with pytest.raises(RewindError, match=match):
            SearchConfig(**bad).validate()
    model, _ = _child("mlp")
    with pytest.raises(RewindError, match="dense layers only"):
        local_heads(model, torch.zeros(4, 64), 10, SearchConfig(retrain_local_loss="pred", retrain_local_max_features=1))
    ptb = tmp_path / "ptb"
    ptb.mkdir()
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (ptb / name).write_text("a b c d e f a b c d e f a b c\n" * 4)
    space = make_space("rnn", nodes=2, hidden=8)
    with pytest.raises(RewindError, match="no per-layer class targets"):
        retrain(space, space.random(np.random.default_rng(0)), load_ptb(ptb),
                SearchConfig(retrain_epochs=1, retrain_batch=2, retrain_local_loss="pred"), 0, bptt=4)


def test_conv_pred_heads_pool_as_the_authors_dim_in_decoder():
    """Halve H and W until C*H*W <= the limit (anokland/local-loss LocalLossBlockConv); 1 = GAP."""
    from rewind.agents.local_loss import LayerHeads, pooled_size

    assert pooled_size(16, 8, 8, 2048) == (8, 8)            # 1,024 features: kept
    assert pooled_size(64, 32, 32, 2048) == (4, 4)          # 65,536 -> 16,384 -> 4,096 -> 1,024
    assert pooled_size(128, 7, 7, 2048) == (4, 4)           # 6,272 -> 2,048 (ceil halving of 7)
    assert pooled_size(16, 8, 8, 1) == (1, 1)
    heads = LayerHeads([(16, 8, 8), (32,)], 10, "pred", max_features=1)
    assert heads.pred[0].in_features == 16 and heads.pred[1].in_features == 32
