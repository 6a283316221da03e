"""KegNet (transfer/kegnet.py): Tucker-2 at full ranks is exact; generated samples carry the class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("tensorly")

from rewind.errors import RewindError
from rewind.transfer.kegnet import (decompose_layer, generator_sampler, n_params, tucker2, tucker_decompose,
                                    tucker_reconstruct, train_generator)

torch.set_num_threads(1)


@pytest.mark.parametrize("shape", [(6, 5), (8, 3, 3, 3)])
def test_tucker_at_full_ranks_reconstructs_the_layer(shape):
    w = torch.randn(*shape)
    core, u_out, u_in = tucker2(w, shape[:2])
    assert torch.allclose(tucker_reconstruct(core, u_out, u_in), w, atol=1e-5)
    core, u_out, u_in = tucker2(w, (2, 2))
    assert (tucker_reconstruct(core, u_out, u_in) - w).abs().max() > 1e-2   # truncated: not exact


def test_decomposed_network_at_full_ranks_equals_the_original():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 3 * 3, 10), nn.ReLU(), nn.Linear(10, 4))
    full = [(8, 3), (6, 8), (10, 54), (4, 10)]
    student = tucker_decompose(net, ranks=full)
    x = torch.randn(5, 3, 8, 8)
    assert torch.allclose(student(x), net(x), atol=1e-4)
    small = tucker_decompose(net, ratio=3.0)
    assert n_params(small) < n_params(net) and not torch.allclose(small(x), net(x), atol=1e-3)
    with pytest.raises(RewindError):
        decompose_layer(nn.Linear(4, 3), (5, 1))


def _digits_teacher():
    from rewind.envs.nas_data import load_digits_data
    d = load_digits_data()
    x, y = d.train_x.flatten(1), d.train_y
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, len(y), (64,))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(d.test_x.flatten(1)).argmax(1) == d.test_y).float().mean() > 0.9
    return net


def test_generated_samples_are_classified_as_their_class():
    teacher = _digits_teacher()
    g, log = train_generator(teacher, 10, (64,), steps=300, batch=64, seed=0)
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (500,), generator=gen)
    with torch.no_grad():
        x = g(F.one_hot(y, 10).float(), torch.randn(500, 10, generator=gen))
        hit = (teacher(x).argmax(1) == y).float().mean().item()
    assert hit > 0.5   # chance: 0.1
    assert log[-1]["dec"] < log[0]["dec"]
    # samples differ within a class (the diversity term)
    assert generator_sampler(g, 32)().std(0).mean() > 1e-2


def test_cli_data_free_distills_a_q_network(tmp_path, capsys):
    from rewind.cli.distill import main
    from rewind.run.experiment import resolve, run_experiment

    teacher = tmp_path / "teacher"
    exp = resolve("dqn", "CartPole-v1", overrides={"agent": {"hidden": [16, 16]}, "run": {
        "eval_every": 0, "eval_episodes": 2, "eval_max_steps": 50, "checkpoint_every": 0}}, steps=100, seed=0)
    run_experiment(exp, teacher, progress=False)
    rc = main(["distill", str(teacher), "--data-free", "--ratio", "2", "--steps", "20", "--generator-steps", "20",
               "--logdir", str(tmp_path / "kg")])
    out = capsys.readouterr().out
    assert rc == 0 and "after data-free fine-tuning" in out and (tmp_path / "kg" / "student_tucker.pt").exists()
    assert main(["distill", str(teacher), "--data-free"]) != 0   # neither ranks nor ratio: one-line error
    assert "exactly one of --tucker-ranks" in capsys.readouterr().err


def test_linear_layers_get_equal_ranks_within_the_ratio():
    """A matrix's Tucker-2 is a truncated SVD: equal ranks, the largest that fit 1/ratio of the weights."""
    from torch import nn

    from rewind.transfer.kegnet import ranks_for_ratio

    layer = nn.Linear(1024, 128)
    for ratio in (2, 4):
        r_out, r_in = ranks_for_ratio(layer, ratio)
        assert r_out == r_in
        size = lambda r: r * (1024 + 128) + r * r   # noqa: E731
        assert size(r_out) <= 1024 * 128 / ratio < size(r_out + 1)
    assert ranks_for_ratio(layer, 2)[0] > ranks_for_ratio(layer, 4)[0] > 8
