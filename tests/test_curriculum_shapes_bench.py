"""The switch-epoch bench's building blocks: the data schedule and the batched networks (issue 6)."""

import numpy as np
import torch

from rewind.bench.studies.curriculum_shapes import BatchedMLP, _Stream, next_chunk


def test_schedule_switches_from_basic_to_geom_at_the_switch_position():
    basic, geom = np.arange(0, 100), np.arange(100, 200)
    rng = np.random.default_rng(0)
    s1 = [_Stream(basic, rng), _Stream(basic, rng)]
    s2 = [_Stream(geom, rng), _Stream(geom, rng)]
    switch = [150, 0]                                   # model 0 switches after 1.5 epochs, model 1 at once
    idx = np.concatenate([next_chunk(s1, s2, switch, pos, 64) for pos in range(0, 320, 64)], axis=1)
    assert np.all(idx[0, :150] < 100) and np.all(idx[0, 150:] >= 100)
    assert np.all(idx[1] >= 100)
    assert sorted(idx[0, :100]) == list(range(100))     # an epoch is a permutation of the set
    assert sorted(idx[1, :100]) == list(range(100, 200))


def test_batched_models_train_independently():
    """Model 0 trained inside a batch of 3 ends where it ends when trained alone."""
    torch.manual_seed(0)
    x, y = torch.randn(3, 16, 10), torch.randint(0, 3, (3, 16))

    def train(models, seeds, xs, ys):
        net = BatchedMLP(models, [10, 8, 8, 8, 3], seeds, "tanh")
        opt = torch.optim.SGD(net.params(), lr=0.1)
        for _ in range(5):
            loss = torch.nn.functional.cross_entropy(net(xs).reshape(-1, 3), ys.reshape(-1), reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net

    together = train(3, [4, 5, 6], x, y)
    alone = train(1, [4], x[:1], y[:1])
    for wa, wt in zip(alone.params(), together.params()):
        assert torch.allclose(wa[0], wt[0], atol=1e-6)
    assert not torch.allclose(together.W[0][0], together.W[0][1])   # seeds give different inits
