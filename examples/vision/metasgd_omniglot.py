"""Meta-SGD on Omniglot (Li, Zhou, Chen and Li, 2017, arXiv:1707.09835).

Meta-SGD learns a learning rate for every parameter along with the initialisation. The paper
uses MAML's Omniglot network and protocol (one inner step in training, Adam meta-updates,
meta learning rate 1e-3); it initialises the rates uniformly in [0.005, 0.1], ours start at the
constant ``--lr`` (default 0.4, MAML's step size), which the rates then learn away from.
Paper accuracy (Table 1): 5-way 1-shot 99.53, 5-way 5-shot 99.93, 20-way 1-shot 95.93,
20-way 5-shot 98.97.

    python examples/vision/metasgd_omniglot.py --root path/to/omniglot [--backend jax]
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "Meta-SGD",
    "paper_source": "Li et al. 2017, Table 1",
    "paper": {"5w1s": 0.9953, "5w5s": 0.9993, "20w1s": 0.9593, "20w5s": 0.9897},
    "algorithm": "metasgd",
    "dataset": "omniglot",
    "ways": 5,
    "shots": 1,
    "meta_batch": 32,
    "lr": 0.4,
    "meta_lr": 1e-3,
    "adaptation_steps": 1,
    "test_adaptation_steps": 1,
    "iterations": 60000,
    "eval_every": 1000,
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
