"""ENAS controller, search spaces and shared-weight child models (issue 7)."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rewind.controllers.enas_controller import ENASController, ENASControllerConfig
from rewind.controllers.search_spaces import (MACRO_OPS, load_arch_json, make_space, space_from_json)
from rewind.errors import RewindError

torch.set_num_threads(1)
OBS = gym.spaces.Box(0.0, 1.0, (1,))
SPACES = {
    "macro": (dict(layers=4, channels=8, pools=1), dict(in_shape=(1, 8, 8), n_classes=10)),
    "micro": (dict(nodes=3, channels=8, cells=1), dict(in_shape=(3, 8, 8), n_classes=10)),
    "rnn": (dict(nodes=4, hidden=16), dict(vocab_size=30)),
    "mlp": (dict(layers=3, widths=(8, 16, 32)), dict(in_shape=(1, 8, 8), n_classes=10)),
    "qnet": (dict(layers=2, channels=(4, 8), hidden_cap=32, in_channels=4, side=10, n_actions=10),
             dict(in_shape=(4, 10, 10), n_classes=10)),
}


def _inputs(name, kwargs, batch=4):
    if name == "rnn":
        return torch.randint(0, kwargs["vocab_size"], (5, batch))
    return torch.randn(batch, *kwargs["in_shape"])


@pytest.mark.parametrize("name", list(SPACES))
def test_log_prob_recomputed_from_scratch_equals_sampling_log_prob(name):
    space = make_space(name, **SPACES[name][0])
    ctl = ENASController(OBS, space.action_space(), seed=3)
    archs, lps = [], []
    for _ in range(5):
        archs.append(ctl.act(None))
        lps.append(ctl.last_log_prob)
    # A fresh controller with the same weights, teacher-forced on the sampled choices.
    other = ENASController(OBS, space.action_space(), seed=99)
    other.load_state_dict(ctl.state_dict())
    recomputed = other.log_prob(np.stack(archs)).detach().numpy()
    np.testing.assert_allclose(recomputed, lps, rtol=1e-5, atol=1e-5)
    assert len({tuple(a) for a in archs}) > 1          # really sampled, not one fixed answer
    assert all(lp < 0 for lp in lps)


def test_log_prob_depends_on_every_choice():
    space = make_space("macro", **SPACES["macro"][0])
    # Larger weights and no temperature so that no decision is near-uniform by accident.
    ctl = ENASController(OBS, space.action_space(), ENASControllerConfig(init_range=1.0, temperature=0), seed=0)
    a = ctl.act(None)
    base = float(ctl.log_prob(a[None])[0])
    for i in range(a.size):                 # changing any one entry changes the probability
        b = a.copy()
        b[i] = (b[i] + 1) % space.action_space().nvec[i]
        assert abs(float(ctl.log_prob(b[None])[0]) - base) > 1e-4, i


def test_reinforce_on_toy_reward_converges_to_conv3x3_within_100_updates():
    """Reward = fraction of layers that chose conv3x3; 100 updates of 10 samples (1000 rewards).

    The tanh constant caps the greedy probability: with c = 2.5 and 6 ops the most any op can
    get is e^c / (e^c + 5 e^-c) = 0.967, so the fraction must also stay below that.
    """
    space = make_space("macro", layers=4, channels=8, pools=1)
    cfg = ENASControllerConfig(lr=3e-3, samples_per_update=10)
    ctl = ENASController(OBS, space.action_space(), cfg, seed=0)
    frac = lambda a: np.mean([op == MACRO_OPS.index("conv3x3") for op, _ in space.split(a)])
    start = np.mean([frac(a) for a in ctl.sample(400)])
    for _ in range(100):
        for _ in range(cfg.samples_per_update):
            a = ctl.act(None)
            ctl.observe(None, a, frac(a), None, True, False, {})
        m = ctl.update()
    end = np.mean([frac(a) for a in ctl.sample(400)])
    assert start < 0.3
    assert end >= 0.9
    cap = np.exp(2.5) / (np.exp(2.5) + 5 * np.exp(-2.5))
    assert end <= cap + 0.02
    assert set(m) >= {"reward", "baseline", "entropy", "skip_rate", "skip_kl"}


def test_skip_penalty_holds_skip_rate_near_target_against_a_reward_for_skips():
    space = make_space("macro", layers=6, channels=8, pools=1)
    rate = {}
    for weight in (0.0, 5.0):
        cfg = ENASControllerConfig(lr=3e-3, skip_weight=weight, skip_target=0.4)
        ctl = ENASController(OBS, space.action_space(), cfg, seed=1)
        for _ in range(60):
            for _ in range(10):
                a = ctl.act(None)
                skips = [s for _, sk in space.split(a) for s in sk]
                ctl.observe(None, a, float(np.mean(skips)), None, True, False, {})
            ctl.update()
        rate[weight] = np.mean([s for a in ctl.sample(200) for _, sk in space.split(a) for s in sk])
    assert rate[0.0] > 0.7                  # rewarded skips take over without the penalty
    assert rate[5.0] < rate[0.0] - 0.15     # the KL penalty pulls them back towards 0.4


def test_controller_state_dict_resumes_the_same_samples():
    space = make_space("micro", **SPACES["micro"][0])
    a = ENASController(OBS, space.action_space(), seed=5)
    for _ in range(10):
        a.observe(None, a.act(None), 0.3, None, True, False, {})
    a.update()
    state = a.state_dict()
    b = ENASController(OBS, space.action_space(), seed=6)
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.sample(8), b.sample(8))


def test_controller_works_on_a_plain_multidiscrete_space():
    ctl = ENASController(OBS, gym.spaces.MultiDiscrete([3, 4, 2]), seed=0)
    a = ctl.act(None)
    assert a.shape == (3,) and np.all(a < [3, 4, 2])
    with pytest.raises(RewindError):
        ENASController(OBS, gym.spaces.Discrete(3))


def _params_with_grad(model, x, arch):
    model.zero_grad(set_to_none=True)
    model(x, arch).float().sum().backward()
    return {id(p): p for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_same_op_same_place_uses_the_same_parameter_tensors_macro():
    space = make_space("macro", layers=3, channels=8, pools=1)
    model = space.shared_model(in_shape=(1, 8, 8), n_classes=10)
    x = torch.randn(6, 1, 8, 8)
    a = space.encode([{"op": "conv3x3", "skip": []}, {"op": "conv5x5", "skip": [0]}, {"op": "sep3x3", "skip": []}])
    b = space.encode([{"op": "conv3x3", "skip": []}, {"op": "sep5x5", "skip": []}, {"op": "sep3x3", "skip": [1]}])
    ga, gb = _params_with_grad(model, x, a), _params_with_grad(model, x, b)
    shared0 = {id(p) for p in model.ops[0]["0"].parameters()}      # conv3x3 at layer 0
    shared2 = {id(p) for p in model.ops[2]["2"].parameters()}      # sep3x3 at layer 2
    assert shared0 <= set(ga) and shared0 <= set(gb)
    assert shared2 <= set(ga) and shared2 <= set(gb)
    only_a = {id(p) for p in model.ops[1]["1"].parameters()}       # conv5x5 at layer 1
    only_b = {id(p) for p in model.ops[1]["3"].parameters()}       # sep5x5 at layer 1
    assert only_a <= set(ga) and not only_a & set(gb)
    assert only_b <= set(gb) and not only_b & set(ga)


def test_same_op_same_place_uses_the_same_parameter_tensors_mlp_and_rnn():
    space = make_space("mlp", layers=2, widths=(8, 16))
    model = space.shared_model(in_shape=(64,), n_classes=10)
    x = torch.randn(5, 64)
    a = space.encode([{"width": 16, "activation": "relu"}, {"width": 8, "activation": "tanh"}])
    b = space.encode([{"width": 8, "activation": "relu"}, {"width": 16, "activation": "sigmoid"}])
    ga, gb = _params_with_grad(model, x, a), _params_with_grad(model, x, b)
    w_relu0 = model.weights[model.index[(0, "relu")]]
    assert id(w_relu0) in ga and id(w_relu0) in gb        # one tensor, sliced to 16 or 8 rows
    assert id(model.weights[model.index[(1, "tanh")]]) in set(ga) - set(gb)
    rnn = make_space("rnn", nodes=3, hidden=8)
    m = rnn.shared_model(vocab_size=20)
    t = torch.randint(0, 20, (4, 3))
    ra = rnn.encode([{"input": None, "activation": "tanh"}, {"input": 0, "activation": "relu"},
                     {"input": 1, "activation": "tanh"}])
    rb = rnn.encode([{"input": None, "activation": "relu"}, {"input": 0, "activation": "sigmoid"},
                     {"input": 0, "activation": "tanh"}])
    ga, gb = _params_with_grad(m, t, ra), _params_with_grad(m, t, rb)
    assert id(m.edges["1_0"]) in ga and id(m.edges["1_0"]) in gb
    assert id(m.edges["2_1"]) in set(ga) - set(gb) and id(m.edges["2_0"]) in set(gb) - set(ga)


@pytest.mark.parametrize("name", list(SPACES))
def test_json_round_trip_and_standalone_output_shape(name, tmp_path):
    params, kwargs = SPACES[name]
    space = make_space(name, **params)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.random(rng)
        doc = json.loads(json.dumps(space.to_json(arch)))
        back_space, back = space_from_json(doc)
        np.testing.assert_array_equal(back, arch)
        assert back_space.params() == space.params()
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(space.to_json(arch)))
    _, loaded = load_arch_json(path, space)
    np.testing.assert_array_equal(loaded, arch)
    solo = space.build(arch, **kwargs)
    shared = space.shared_model(**kwargs)
    x = _inputs(name, kwargs)
    out = solo(x)
    expected = (5, 4, kwargs["vocab_size"]) if name == "rnn" else (4, 10)
    assert tuple(out.shape) == expected
    assert tuple(shared(x, arch).shape) == expected
    assert sum(p.numel() for p in solo.parameters()) < sum(p.numel() for p in shared.parameters())
    assert space.describe(arch).count("\n") >= 2


def test_architecture_json_that_does_not_fit_the_space_is_a_clear_error(tmp_path):
    space = make_space("macro", layers=3, channels=8, pools=1)
    good = space.to_json(space.random(np.random.default_rng(0)))
    bad_docs = [
        {**good, "arch": good["arch"][:2]},                                      # wrong number of layers
        {**good, "arch": [{"op": "conv7x7", "skip": []}] + good["arch"][1:]},   # op not in the space
        {**good, "arch": good["arch"][:2] + [{"op": "conv3x3", "skip": [2]}]},  # skip to a later layer
        {**good, "space": "nope"},
        {**good, "params": {"layers": 3, "channels": 8, "pools": 1, "dropout": 0.1, "bogus": 1}},
        {"arch": []},
    ]
    for doc in bad_docs:
        with pytest.raises(RewindError):
            space_from_json(doc)
    other = make_space("macro", layers=4, channels=8, pools=1)
    (tmp_path / "a.json").write_text(json.dumps(other.to_json(other.random(np.random.default_rng(1)))))
    with pytest.raises(RewindError, match="is for space"):
        load_arch_json(tmp_path / "a.json", space)
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(RewindError, match="not valid JSON"):
        load_arch_json(tmp_path / "b.json")
    with pytest.raises(RewindError, match="does not exist"):
        load_arch_json(tmp_path / "missing.json")
    with pytest.raises(RewindError, match="choice #"):
        space.validate([99] * space.size())
    with pytest.raises(RewindError, match="unknown search space"):
        make_space("transformer")


# ---- issue 15: faithful to the official controllers ----

def _official_skip_penalty(scores_per_layer, target):
    """general_controller.py, plainly: logit = squash([-q, q]); p = sigmoid(logit) elementwise;
    kl = sum(p * log(p / [1 - t, t])) per layer; the penalty is the mean over layers."""
    kls = []
    for q in scores_per_layer:                      # raw attention scores of one layer, (n,)
        logit = np.stack([-q, q], axis=1) / 5.0     # temperature 5
        logit = 1.5 * np.tanh(logit)                # tanh constant 1.5
        p = 1.0 / (1.0 + np.exp(-logit))
        kls.append(np.sum(p * np.log(p / np.array([1 - target, target]))))
    return np.mean(kls)


def test_skip_penalty_equals_the_official_formula_on_fixed_logits():
    from rewind.controllers.enas_controller import skip_penalty

    rng = np.random.default_rng(0)
    raw = [rng.normal(0, 3, size=n) for n in range(1, 12)]      # 12 layers: layers 1..11 have skips
    squashed = [torch.tensor(1.5 * np.tanh(q / 5.0))[None] for q in raw]
    got = float(skip_penalty(squashed, 0.4)[0])
    assert got == pytest.approx(_official_skip_penalty(raw, 0.4), rel=1e-6)
    # the pre-issue-15 form (sigmoid of the raw score, summed over layers) is far from it
    p_raw = [1 / (1 + np.exp(-q)) for q in raw]
    old = sum(np.sum(p * np.log(p / 0.4) + (1 - p) * np.log((1 - p) / 0.6)) for p in p_raw)
    assert abs(old - got) > 1.0


def test_controller_skip_kl_is_the_official_penalty_of_its_own_scores():
    space = make_space("macro", layers=5, channels=8, pools=1)
    cfg = ENASControllerConfig(init_range=1.0, temperature=5.0, tanh_constant=1.5)
    ctl = ENASController(OBS, space.action_space(), cfg, seed=1)
    pol = ctl.policy
    captured = []
    orig = pol._squash

    def spy(logits, reduce=1.0):
        out = orig(logits, reduce)
        if logits.dim() == 3:                       # the skip decisions' [-q, q]
            captured.append(logits[0, :, 1].detach().numpy())   # raw q
        return out
    pol._squash = spy
    _, _, _, kl, _ = pol.run(1, generator=torch.Generator().manual_seed(0))
    assert len(captured) == 4
    assert float(kl[0]) == pytest.approx(_official_skip_penalty(captured, 0.4), rel=1e-5)


def test_micro_reduction_cell_starts_from_the_normal_cells_last_state_and_anchors_are_zeros():
    space = make_space("micro", nodes=3, channels=8, cells=1)
    ctl = ENASController(OBS, space.action_space(), ENASControllerConfig(init_range=0.5), seed=0)
    pol = ctl.policy
    pol.run(2, generator=torch.Generator().manual_seed(0))
    first, second = pol.trace["reset_state"]
    assert all(float(h.abs().sum()) == 0 for h, _ in first)        # the normal cell starts at zeros
    # the reduction cell's first input state is the normal cell's last state: rerun the normal cell alone
    normal = [d for d in pol.decisions][: len(pol.decisions) // 2]
    keep = pol.decisions
    pol.decisions = normal
    pol.run(2, generator=torch.Generator().manual_seed(0))
    last = pol.trace["final_state"]
    pol.decisions = keep
    for (h1, c1), (h2, c2) in zip(second, last):
        torch.testing.assert_close(h1, h2)
        torch.testing.assert_close(c1, c2)
        assert float(h1.abs().sum()) > 0
    pol.run(2, generator=torch.Generator().manual_seed(0))
    for cell in pol.trace["anchors"]:
        assert len(cell) == 3 + 2
        assert float(cell[0].abs().sum()) == 0 and float(cell[1].abs().sum()) == 0   # cell inputs: zeros
        assert float(cell[2].abs().sum()) > 0                                          # nodes: LSTM states
    # the named alternatives restore the old behaviour
    alt = ENASController(OBS, space.action_space(),
                         ENASControllerConfig(init_range=0.5, cell_state="fresh", input_anchors="lstm"), seed=0)
    alt.policy.run(2, generator=torch.Generator().manual_seed(0))
    assert all(float(h.abs().sum()) == 0 for h, _ in alt.policy.trace["reset_state"][1])
    assert float(alt.policy.trace["anchors"][0][0].abs().sum()) > 0


def test_micro_op_bias_and_op_tanh_reduce_as_official():
    from rewind.controllers.search_spaces import MICRO_OPS

    space = make_space("micro", nodes=2, channels=8, cells=1)
    cfg = ENASControllerConfig(tanh_constant=1.1, op_tanh_reduce=2.5, temperature=0)
    pol = ENASController(OBS, space.action_space(), cfg, seed=0).policy
    assert MICRO_OPS[:2] == ("sep3x3", "sep5x5")
    np.testing.assert_allclose(pol.op_bias["micro_op"].detach().numpy(), [10, 10, 0, 0, 0])
    h = torch.zeros(1, cfg.lstm_size)
    normal = pol._op_logits("micro_op", h, True)[0].detach().numpy()
    reduction = pol._op_logits("micro_op", h, False)[0].detach().numpy()
    c = 1.1 / 2.5
    np.testing.assert_allclose(reduction, c * np.tanh([10, 10, 0, 0, 0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(normal, reduction + [0.25, 0.25, -0.25, -0.25, -0.25], rtol=1e-6, atol=1e-7)
    none = ENASController(OBS, space.action_space(), ENASControllerConfig(op_bias="none"), seed=0).policy
    assert len(none.op_bias) == 0
    with pytest.raises(RewindError, match="op_bias"):
        ENASControllerConfig(op_bias="paper").validate()


def test_on_a_toy_space_the_better_op_gains_probability_and_entropy_falls():
    """Three independent 4-way op decisions; reward 1 per decision choosing op 2, else 0."""
    space = gym.spaces.MultiDiscrete([4, 4, 4])
    cfg = ENASControllerConfig(lr=5e-3, samples_per_update=10, temperature=0, tanh_constant=2.5)
    ctl = ENASController(OBS, space, cfg, seed=0)

    def stats():
        with torch.no_grad():
            acts, _, ent, _, _ = ctl.policy.run(500, generator=torch.Generator().manual_seed(1))
        return float((acts == 2).float().mean()), float(ent.mean())
    p0, e0 = stats()
    for _ in range(40):
        for _ in range(cfg.samples_per_update):
            a = ctl.act(None)
            ctl.observe(None, a, float(np.mean(a == 2)), None, True, False, {})
        ctl.update()
    p1, e1 = stats()
    assert p0 < 0.35 and e0 > 0.95 * 3 * np.log(4)
    assert p1 > p0 + 0.3
    assert e1 < e0 - 0.5


def test_cell_settings_are_refused_for_spaces_without_cells():
    space = make_space("macro", layers=3, channels=8, pools=1)
    with pytest.raises(RewindError, match="agent.cell_state='fresh' applies to spaces with cells"):
        ENASController(OBS, space.action_space(), ENASControllerConfig(cell_state="fresh"), seed=0)
