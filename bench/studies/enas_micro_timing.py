"""Micro-space shared-weight step time on CIFAR-10-format data (synthetic batches in the real pickle format).

Not a suite: ENAS timing (seconds per shared-weight step); nothing is trained to the end.

    nice -n 10 python3 -m rewind.bench.studies.enas_micro_timing
"""
import pickle, numpy as np, torch, time, tempfile, pathlib
torch.set_num_threads(1)
from rewind.controllers.search_spaces import make_space
from rewind.run.search import make_searcher
from rewind.envs.nas import NASEnvConfig
from rewind.envs.nas_data import load_nas_data
d = pathlib.Path(tempfile.mkdtemp()); rng = np.random.default_rng(0)
for n in ["data_batch_1", "test_batch"]:
    pickle.dump({b"data": rng.integers(0,256,(1000,3072),dtype=np.uint8), b"labels": list(rng.integers(0,10,1000))}, open(d/n,"wb"))
data = load_nas_data(str(d))
sp = make_space("micro", nodes=5, channels=20, cells=2)
env, agent = make_searcher(sp, data, "enas", None, NASEnvConfig(batch_size=160, child_steps=3, controller_steps=10), 0)
env.train_shared(1)
t=time.perf_counter(); m = env.train_shared(3); dt=(time.perf_counter()-t)/3
print(f"micro shared step batch 160: {dt:.2f} s/step on 1 CPU thread; epoch of 45000/160=281 steps: {281*dt/60:.1f} min")
