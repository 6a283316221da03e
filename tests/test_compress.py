"""Deep Compression: Huffman coding, sparse gaps, pruning, weight sharing, the .rwz file and the CLI.

Real MinAtar envs, real DQN/EBU agents learning from real transitions; no mocks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewind.agents import make_agent
from rewind.transfer import huffman
from rewind.transfer.compress import (CentroidOptimizer, CompressConfig, coded_layers, compress_agent, compressed_meta,
                                    gap_symbols, is_compressed, kmeans_1d, positions_from_gaps, prune_masks, quantise,
                                    read_compressed, write_compressed)
from rewind.run.experiment import resolve
from rewind.transfer import load_agent
from rewind.cli import main
from rewind.envs import make_env
from rewind.errors import RewindError

AGENT = {"learning_starts": 50, "buffer_size": 2000, "batch_size": 16, "optimizer": "adam", "lr": 1e-3,
         "target_update_every": 25}


def make_filled_agent(name="dqn", steps=400, seed=0):
    """A real agent on MinAtar Breakout with `steps` real transitions in its replay and a few updates."""
    exp = resolve(name, "minatar-breakout", overrides={"agent": AGENT, "run": {"eval_episodes": 1}}, seed=seed)
    env = make_env(exp.env, exp.env_config, training=True, seed=seed)
    agent = make_agent(name, env, exp.meta()["agent_config"], seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        a = agent.act(obs)
        nxt, r, term, trunc, info = env.step(a)
        agent.observe(obs, a, r, nxt, term, trunc, info)
        agent.update()
        obs = env.reset()[0] if term or trunc else nxt
    return agent, exp.meta()


# ---------------------------------------------------------------------------- Huffman
def test_huffman_round_trip_is_exact():
    rng = np.random.default_rng(0)
    fib = [1, 1]
    while len(fib) < 22:
        fib.append(fib[-1] + fib[-2])
    cases = [np.zeros(0, dtype=np.int64), np.full(37, 3), np.array([0, 1])]
    for _ in range(30):
        alphabet = int(rng.integers(2, 300))
        p = rng.dirichlet(np.full(alphabet, rng.uniform(0.05, 2.0)))
        cases.append(rng.choice(alphabet, size=int(rng.integers(1, 3000)), p=p))
    cases.append(rng.permutation(np.repeat(np.arange(len(fib)), fib)))  # codes of 21 bits: the slow decode path
    for symbols in cases:
        counts = np.bincount(symbols, minlength=1)
        lengths = huffman.code_lengths(counts)
        data = huffman.encode(symbols, lengths)
        assert len(data) == math.ceil(huffman.encoded_bits(counts, lengths) / 8)
        assert np.array_equal(huffman.decode(data, lengths, len(symbols)), symbols)
    assert huffman.code_lengths(np.bincount(cases[-1])).max() > huffman.TABLE_BITS


def test_huffman_codes_are_optimal_prefix_codes():
    """Average length within [entropy, entropy + 1), Kraft sum exactly 1; CLRS's example costs 224 bits."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        counts = rng.integers(1, 1000, size=int(rng.integers(2, 64)))
        lengths = huffman.code_lengths(counts)
        p = counts / counts.sum()
        entropy = -(p * np.log2(p)).sum()
        mean_len = (p * lengths).sum()
        assert entropy - 1e-9 <= mean_len < entropy + 1
        assert sum(2.0 ** -int(n) for n in lengths) == pytest.approx(1.0)
    assert huffman.encoded_bits([45, 13, 12, 16, 9, 5], huffman.code_lengths([45, 13, 12, 16, 9, 5])) == 224


def test_huffman_corrupt_input_is_a_clear_error():
    symbols = np.arange(50) % 7
    lengths = huffman.code_lengths(np.bincount(symbols))
    data = huffman.encode(symbols, lengths)
    with pytest.raises(RewindError, match="ends early"):
        huffman.decode(data[: len(data) // 2], lengths, len(symbols))
    with pytest.raises(RewindError, match="Kraft"):
        huffman.decode(data, np.ones(7, dtype=np.int64), len(symbols))


# ---------------------------------------------------------------------------- sparse gaps, k-means
@pytest.mark.parametrize("gap_bits", [1, 3, 5, 8])
def test_gap_coding_round_trip_with_fillers(gap_bits):
    rng = np.random.default_rng(gap_bits)
    positions = np.sort(rng.choice(5000, size=300, replace=False))
    positions = np.concatenate([[0], positions[positions > 0], [7000]])  # a first weight at 0 and one long gap
    symbols = gap_symbols(positions, gap_bits)
    assert symbols.max() < 2 ** gap_bits
    assert (symbols == 2 ** gap_bits - 1).any()  # the long gap needed escape fillers
    assert np.array_equal(positions_from_gaps(symbols, gap_bits), positions)


def test_kmeans_linear_init_and_lloyd():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-1, 0.05, 500), rng.normal(2, 0.05, 300)])
    centroids, idx = kmeans_1d(values, 2)
    assert np.allclose(sorted(centroids), [-1, 2], atol=0.02)
    assert np.array_equal(centroids[idx] > 0.5, values > 0.5)
    centroids, idx = kmeans_1d(values, 32)
    err = np.abs(centroids[idx] - values)
    assert err.max() < (values.max() - values.min()) / 31  # no value is farther than a linear-grid step


# ---------------------------------------------------------------------------- the stages on real agents
def _snapshots(agent):
    """evaluate_fn hook: copy the coded weights at every stage instead of playing episodes."""
    shots = []

    def hook(a):
        shots.append({n: p.detach().clone() for n, p in coded_layers(a.q).items()})
        return {"return_mean": 0.0, "return_std": 0.0, "returns": []}

    return shots, hook


@pytest.mark.parametrize("name", ["dqn", "ebu"])
def test_pruned_weights_stay_zero_through_retraining_and_fine_tuning(one_torch_thread, name):
    agent, meta = make_filled_agent(name)
    shots, hook = _snapshots(agent)
    cfg = CompressConfig(prune=0.7, conv_prune=0.5, output_prune=0.4, bits=3, conv_bits=4, retrain_steps=25,
                         finetune_steps=25)
    compress_agent(agent, meta, cfg, hook, progress=False)
    dense, pruned, retrained, quantised, finetuned = shots
    for n in dense:
        zero = pruned[n] == 0
        share = 0.5 if dense[n].dim() > 2 else 0.4 if n == list(dense)[-1] else 0.7
        assert zero.sum().item() == math.floor(share * zero.numel())
        assert dense[n][zero].abs().max() <= dense[n][~zero].abs().min()  # the smallest magnitudes went
        for later in (retrained, quantised, finetuned):
            assert (later[n][zero] == 0).all()
        assert not torch.equal(retrained[n][~zero], pruned[n][~zero])     # retraining did move the kept weights
        assert not torch.equal(finetuned[n][~zero], quantised[n][~zero])  # and fine-tuning the centroids


@pytest.mark.parametrize("prune,bits", [(0.0, 2), (0.6, 3)])
def test_each_quantised_layer_holds_at_most_2_to_the_bits_values(one_torch_thread, prune, bits):
    agent, meta = make_filled_agent("dqn")
    cfg = CompressConfig(prune=prune, bits=bits, conv_bits=bits, retrain_steps=5, finetune_steps=20)
    compress_agent(agent, meta, cfg, None, progress=False)
    for n, p in coded_layers(agent.q).items():
        values = torch.unique(p.detach())
        kept = values[values != 0] if prune > 0 else values
        assert len(kept) <= 2 ** bits, n
        assert len(kept) >= 2  # weights are shared, not collapsed


def test_centroid_gradient_is_the_sum_of_its_weights_gradients(one_torch_thread):
    agent, _ = make_filled_agent("dqn", steps=200)
    cfg = CompressConfig(prune=0.5, bits=3, conv_bits=3)
    masks = prune_masks(agent.q, cfg)
    layers = quantise(agent.q, masks, cfg)
    opt = CentroidOptimizer(agent.q, layers, "adam", 1e-3, 1e-8, 0.95)
    obs = torch.from_numpy(agent.replay.frames[:32].astype(np.float32))
    opt.zero_grad()
    (agent.q(obs) ** 2).sum().backward()
    grads = {n: p.grad.reshape(-1).clone() for n, p in coded_layers(agent.q).items()}
    opt.step()
    for n, q in layers.items():
        want = np.zeros(len(q.centroids))
        np.add.at(want, q.idx, grads[n][q.positions].numpy())
        assert np.allclose(opt.centroids[n].grad.numpy(), want, rtol=1e-5, atol=1e-7)
        w = coded_layers(agent.q)[n].detach().reshape(-1).numpy()
        assert np.array_equal(w[q.positions], opt.centroids[n].detach().numpy()[q.idx])  # weights = new centroids


# ---------------------------------------------------------------------------- the file
@pytest.mark.parametrize("grown", [False, True])
def test_file_decodes_to_exactly_the_quantised_weights_and_acts_the_same(one_torch_thread, tmp_path, grown):
    agent, meta = make_filled_agent("dqn")
    if grown:  # a Net2Net-widened agent: the file must carry the growth so the loader rebuilds its shapes
        agent.grow(widen=2.0)
    cfg = CompressConfig(prune=0.8, bits=4, retrain_steps=10, finetune_steps=10)
    report = compress_agent(agent, meta, cfg, None, progress=False)
    path = tmp_path / "m.rwz"
    size = write_compressed(path, compressed_meta(agent, meta), report["records"])
    assert size == path.stat().st_size and is_compressed(path)
    assert report["sizes"]["huffman"] < report["sizes"]["quantised"] < report["sizes"]["pruned"] \
        < report["sizes"]["dense"] == 4 * sum(t.numel() for t in agent.q.state_dict().values())
    decoded = read_compressed(path)["network"]
    for n, t in agent.q.state_dict().items():
        assert torch.equal(decoded[n], t), n
    loaded, env, loaded_meta = load_agent(path)      # what `rewind eval model.rwz` runs
    assert loaded_meta["agent"] == "dqn"
    obs = agent.replay.frames[:300]
    with torch.no_grad():
        assert torch.equal(loaded.q(torch.from_numpy(obs)), agent.q(torch.from_numpy(obs)))
    assert [loaded.act(o, explore=False) for o in obs] == [agent.act(o, explore=False) for o in obs]


def test_truncated_or_corrupt_file_is_one_clear_error(one_torch_thread, tmp_path):
    agent, meta = make_filled_agent("dqn", steps=150)
    report = compress_agent(agent, meta, CompressConfig(retrain_steps=0, finetune_steps=0), None, progress=False)
    path = tmp_path / "m.rwz"
    write_compressed(path, meta, report["records"])
    data = path.read_bytes()
    for bad in (data[: len(data) // 2], data[:-1], data[:40] + bytes([data[40] ^ 0x10]) + data[41:]):
        path.write_bytes(bad)
        with pytest.raises(RewindError, match="truncated or corrupt"):
            load_agent(path)
    with pytest.raises(RewindError, match="does not exist"):
        read_compressed(tmp_path / "missing.rwz")


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny real `rewind train` runs: with and without the replay in the checkpoint."""
    root = tmp_path_factory.mktemp("compress")
    torch.set_num_threads(1)
    common = ["--agent", "dqn", "--env", "minatar-breakout", "--steps", "300", "--no-progress",
              "--set", "agent.learning_starts=100", "--set", "run.eval_episodes=1", "--set", "run.eval_every=0",
              "--set", "run.torch_threads=1"]
    assert main(["train", "--logdir", str(root / "run"), *common]) == 0
    assert main(["train", "--logdir", str(root / "nobuf"), *common, "--set", "run.save_buffer=false"]) == 0
    return root


def test_cli_compress_then_eval_reproduces_the_return(trained, capsys, one_torch_thread):
    out = trained / "out" / "model.rwz"
    assert main(["compress", str(trained / "run" / "checkpoint.pt"), "--prune", "0.9", "--bits", "5",
                 "--retrain-steps", "20", "--finetune-steps", "20", "--episodes", "5", "--out", str(out),
                 "--no-progress"]) == 0
    table = capsys.readouterr().out
    for stage in ("dense fp32", "pruned", "quantised", "huffman coded", "file model.rwz"):
        assert stage in table
    import json
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["sizes"]["file"] == out.stat().st_size
    assert set(summary["evals"]) == {"dense", "pruned", "retrained", "quantised", "finetuned"}
    assert main(["eval", str(out), "--episodes", "5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"mean {summary['evals']['finetuned']['return_mean']:.2f} ")


def _fails(capsys, argv, fragment):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rewind: error: ") and fragment in err[0], err


def test_cli_bad_input(trained, capsys, tmp_path):
    ckpt = str(trained / "run" / "checkpoint.pt")
    quick = ["--episodes", "0", "--retrain-steps", "0", "--finetune-steps", "0", "--no-progress"]
    for prune in ("1.0", "-0.1", "nan"):
        _fails(capsys, ["compress", ckpt, "--prune", prune, *quick], "--prune")
    for bits in ("0", "17"):
        _fails(capsys, ["compress", ckpt, "--bits", bits, *quick], "--bits must be an integer in 1..16")
        _fails(capsys, ["compress", ckpt, "--conv-bits", bits, *quick], "--conv-bits")
    _fails(capsys, ["compress", str(tmp_path / "nope.pt"), *quick], "does not exist")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    _fails(capsys, ["compress", str(garbage), *quick], "corrupt")
    _fails(capsys, ["compress", str(trained / "nobuf"), "--episodes", "0", "--no-progress"], "no replay memory")
    _fails(capsys, ["compress", ckpt, *quick, "--out", ckpt], "not a compressed model")
    bad_rwz = tmp_path / "bad.rwz"
    bad_rwz.write_bytes(b"RWZ\x00" + b"\x01" * 30)
    _fails(capsys, ["eval", str(bad_rwz)], "truncated or corrupt")
    _fails(capsys, ["compress", str(bad_rwz), *quick], "already compressed")
