"""Architecture-search env, dataset loaders, the search run (resume) and `rewind search` bad input."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rewind.controllers.enas_controller import ENASControllerConfig
from rewind.run.search import SearchConfig, make_searcher, run_search
from rewind.cli.search import main as search_main
from rewind.controllers.search_spaces import load_arch_json, make_space
from rewind.envs.nas import NASEnv, NASEnvConfig
from rewind.envs.nas_data import load_cifar10, load_nas_data, load_ptb
from rewind.errors import RewindError

torch.set_num_threads(1)


def _write_cifar(d, n_per_batch=6, batches=2, seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(d / name, "wb") as f:   # the real files: pickled dicts with bytes keys, labels a list
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f)
        written[name] = (data, labels)
    return written


def test_cifar10_loader_reads_the_python_pickle_format(tmp_path):
    written = _write_cifar(tmp_path / "cifar", n_per_batch=10, batches=2)
    data = load_cifar10(tmp_path / "cifar", valid_fraction=0.1)
    assert data.train_x.shape == (18, 3, 32, 32) and data.valid_x.shape == (2, 3, 32, 32)
    assert data.test_x.shape == (10, 3, 32, 32) and data.n_classes == 10
    labels = written["data_batch_1"][1] + written["data_batch_2"][1]
    assert data.train_y.tolist() == labels[:18] and data.valid_y.tolist() == labels[18:]
    assert data.test_y.tolist() == written["test_batch"][1]
    # Channel-major layout: the first 1024 bytes are the red plane of image 0.
    raw = written["data_batch_1"][0][0]
    red = torch.tensor(raw[:1024].reshape(32, 32), dtype=torch.float32)
    got = data.train_x[0, 0]
    corr = np.corrcoef(red.flatten().numpy(), got.flatten().numpy())[0, 1]
    assert corr > 0.999
    assert abs(float(data.train_x.mean())) < 0.1          # standardised on train
    assert load_nas_data(str(tmp_path / "cifar")).name == "cifar10"


def test_cifar10_loader_rejects_missing_or_wrong_files(tmp_path):
    with pytest.raises(RewindError, match="not a CIFAR-10 directory"):
        load_cifar10(tmp_path)
    _write_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(RewindError, match="not a CIFAR-10 python batch"):
        load_cifar10(tmp_path / "c")
    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(RewindError, match="3072"):
        load_cifar10(tmp_path / "c")


def _write_ptb(d, train, valid, test):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in zip(("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"), (train, valid, test)):
        (d / name).write_text(text)


def test_ptb_loader_reads_the_text_files(tmp_path):
    _write_ptb(tmp_path / "ptb", " the cat sat \n the dog <unk> sat \n", " the cat \n", " a dog sat \n")
    data = load_ptb(tmp_path / "ptb")
    words = lambda ids: [data.vocab[i] for i in ids.tolist()]
    assert words(data.train) == ["the", "cat", "sat", "<eos>", "the", "dog", "<unk>", "sat", "<eos>"]
    assert words(data.valid) == ["the", "cat", "<eos>"]
    assert words(data.test) == ["<unk>", "dog", "sat", "<eos>"]          # 'a' is out of vocabulary
    assert load_nas_data(str(tmp_path / "ptb")).name == "ptb"
    _write_ptb(tmp_path / "p2", "the cat\n", "the cat\n", "a dog\n")    # no <unk> to map 'a' to
    with pytest.raises(RewindError, match="not in the training vocabulary"):
        load_ptb(tmp_path / "p2")
    (tmp_path / "p2" / "ptb.test.txt").unlink()
    with pytest.raises(RewindError, match="missing ptb.test.txt"):
        load_ptb(tmp_path / "p2")


def test_data_spec_errors(tmp_path):
    with pytest.raises(RewindError, match="neither"):
        load_nas_data(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewindError, match="holds neither"):
        load_nas_data(str(tmp_path / "empty"))


def test_env_trains_shared_weights_between_controller_phases_and_rewards_are_validation_accuracy():
    data = load_nas_data("digits")
    space = make_space("mlp", layers=2, widths=(16, 32))
    cfg = NASEnvConfig(batch_size=64, controller_steps=5, phases=12)
    env, agent = make_searcher(space, data, "random", None, cfg, seed=0)
    env.reset(seed=0)
    rewards, phases = [], []
    for i in range(60):
        a = agent.act(None)
        _, r, term, trunc, info = env.step(a)
        assert term and not trunc and 0.0 <= r <= 1.0
        rewards.append(r)
        phases.append("child" in info)
    assert phases == [i % 5 == 0 for i in range(60)]     # one shared-weight phase before every 5 rewards
    assert env.phase == 12 and env.child_steps_done == 12 * (len(data.train_y) // 64)
    assert np.mean(rewards[-10:]) > 0.6                    # the shared weights learned (chance: 0.1)
    assert np.mean(rewards[-10:]) > np.mean(rewards[:5]) + 0.2
    with pytest.raises(RewindError, match="not in the action space"):
        env.step(np.array([7, 0, 0, 0]))


def test_text_env_reward_is_80_over_perplexity(tmp_path):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    line = lambda n: " ".join(rng.choice(words, n)) + "\n"
    _write_ptb(tmp_path / "ptb", "".join(line(10) for _ in range(40)), line(60), line(60))
    data = load_ptb(tmp_path / "ptb")
    space = make_space("rnn", nodes=3, hidden=8)
    env = NASEnv(data, space.shared_model(**data.model_kwargs()), space.action_space(seed=0),
                 config=NASEnvConfig(batch_size=4, eval_batch_size=2, bptt=5, controller_steps=2, phases=1, lr_max=1.0,
                                     momentum=0.0))
    a = space.random(rng)
    _, r, *_ = env.step(a)
    x, y = env.valid_batches.next()
    with torch.no_grad():
        out = env.model.eval()(x, a)
        ppl = float(torch.exp(torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))))
    assert 80.0 / ppl == pytest.approx(env.score(a, (x, y)), rel=1e-4)
    assert 80.0 / len(data.vocab) / 3 < r < 80.0


def test_search_resumes_to_the_same_result_as_an_uninterrupted_run(tmp_path):
    data = load_nas_data("digits")
    space = make_space("mlp", layers=2, widths=(16, 32))
    kw = dict(strategy="enas", agent_cfg=ENASControllerConfig(samples_per_update=5, lr=3e-3),
              env_cfg=NASEnvConfig(batch_size=64, controller_steps=10, phases=4),
              search_cfg=SearchConfig(derive_samples=20, retrain_epochs=2, retrain_batch=64), seed=1)
    full = run_search(space, data, logdir=tmp_path / "full", **kw)
    assert run_search(space, data, logdir=tmp_path / "cut", stop_after=20, **kw) is None
    resumed = run_search(space, data, logdir=tmp_path / "cut", resume=True, **kw)
    assert resumed["arch"] == full["arch"]
    assert resumed["derive_best_score"] == full["derive_best_score"]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    for name in ("arch.json", "arch.txt", "arch.png", "result.json", "checkpoint.pt"):
        assert (tmp_path / "cut" / name).stat().st_size > 0
    _, arch = load_arch_json(tmp_path / "cut" / "arch.json", space)
    assert space.to_json(arch) == full["arch"]
    assert list((tmp_path / "cut").glob("events.out.tfevents*"))
    with pytest.raises(RewindError, match="different search"):
        run_search(space, data, logdir=tmp_path / "cut", resume=True, **{**kw, "seed": 2})
    with pytest.raises(RewindError, match="nothing to resume"):
        run_search(space, data, logdir=tmp_path / "none", resume=True, **kw)


def test_search_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    cases = [
        (["--space", "hyper", "--data", "digits"], "unknown search space"),
        (["--space", "mlp", "--data", str(tmp_path / "missing")], "neither"),
        (["--space", "mlp", "--data", "digits", "--phases", "0"], "budget of zero"),
        (["--space", "mlp", "--data", "digits", "--budget", "0"], "--budget must be >= 1"),
        (["--space", "mlp", "--data", "digits", "--strategy", "grid"], "unknown strategy"),
        (["--space", "mlp", "--data", "digits", "--set", "agent.lstm_sise=3"], "did you mean agent.lstm_size"),
        (["--space", "mlp", "--data", "digits", "--set", "env.batch_size=0"], "env.batch_size"),
    ]
    for argv, msg in cases:
        assert search_main(["search", *argv, "--logdir", str(tmp_path / "run"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and err.count("\n") == 0, (argv, err)
    other = make_space("macro", layers=2, channels=4, pools=1)
    (tmp_path / "arch.json").write_text(json.dumps(other.to_json(other.random(np.random.default_rng(0)))))
    assert search_main(["search", "--space", "mlp", "--data", "digits", "--arch", str(tmp_path / "arch.json")]) == 2
    assert "is for space macro" in capsys.readouterr().err
    _write_ptb(tmp_path / "ptb", "a b\n", "a b\n", "a b\n")
    assert search_main(["search", "--space", "macro", "--data", str(tmp_path / "ptb")]) == 2
    assert "does not fit text data" in capsys.readouterr().err


def test_search_cli_runs_end_to_end_on_digits(tmp_path, capsys):
    argv = ["search", "--space", "mlp", "--data", "digits", "--phases", "2", "--set", "env.controller_steps=10",
            "--derive-samples", "10", "--retrain-epochs", "1", "--logdir", str(tmp_path / "r"), "--no-progress"]
    assert search_main(argv) == 0
    out = capsys.readouterr().out
    assert "test_accuracy=" in out
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["rewards"] == 20 and result["strategy"] == "enas"
    assert search_main(argv) == 2                                  # refuses to overwrite without --resume
    assert "--resume" in capsys.readouterr().err


def test_equal_budget_enas_and_random_search_do_the_same_shared_weight_optimizer_steps():
    """--budget counts shared-weight optimizer steps: both strategies do exactly that many, and
    score the same number of controller samples, whatever their speed."""
    from rewind.run.search import make_searcher

    space = make_space("mlp", layers=2, widths=(8, 16))
    data = load_nas_data("digits")
    counts = {}
    for strategy in ("enas", "random"):
        env_cfg = NASEnvConfig(batch_size=64, child_steps=7, controller_steps=10, phases=99, budget_steps=30)
        calls = {"n": 0}
        orig = torch.optim.SGD.step

        def counting(self, *a, **k):
            calls["n"] += 1
            return orig(self, *a, **k)
        torch.optim.SGD.step = counting
        try:
            res = run_search(space, data, strategy=strategy, env_cfg=env_cfg,
                             search_cfg=SearchConfig(derive_samples=5, retrain_epochs=0), seed=0, do_retrain=False)
        finally:
            torch.optim.SGD.step = orig
        counts[strategy] = (calls["n"], res["shared_steps"], res["controller_samples"], res["phases"])
    assert counts["enas"] == counts["random"] == (30, 30, 50, 5)     # ceil(30 / 7) = 5 phases, last cut to 2


def test_kendall_tau_ci_brackets_the_estimate_and_detects_rankings():
    from rewind.run.search import kendall_tau_ci

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    good = kendall_tau_ci(x, x + 0.1 * rng.normal(size=30), n_boot=300)
    none = kendall_tau_ci(x, rng.normal(size=30), n_boot=300)
    assert good["ci_low"] <= good["tau"] <= good["ci_high"] and good["ci_low"] > 0.6
    assert none["ci_low"] < 0 < none["ci_high"]
    with pytest.raises(RewindError, match="equal-length"):
        kendall_tau_ci([1, 2, 3], [1, 2])


class _CallsOnLoad:
    """A pickle payload that calls a function when loaded (here: a harmless marker write)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


def test_cifar_loader_refuses_a_pickle_that_would_call_code(tmp_path):
    d = tmp_path / "cifar"
    _write_cifar(d, n_per_batch=4, batches=1)
    marker = tmp_path / "marker"
    (d / "data_batch_1").write_bytes(pickle.dumps({b"data": _CallsOnLoad(marker), b"labels": [0]}))
    with pytest.raises(RewindError, match="not a CIFAR-10 python batch"):
        load_cifar10(d)
    assert not marker.exists()
