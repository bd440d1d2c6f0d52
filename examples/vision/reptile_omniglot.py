"""Reptile on Omniglot (Nichol, Achiam and Schulman, 2018, arXiv:1803.02999).

Reptile moves the initialisation towards the weights each task's inner loop reaches. The paper
(Table 3, Omniglot) uses 5 inner steps with Adam (learning rate 1e-3) on batches of 10, a meta
step size of 1 annealed linearly to 0, meta-batch 5, 100,000 outer steps and 50 inner steps at
test time. Our ``MetaLearner`` runs the inner loop with plain SGD (``--lr``) and applies the
Reptile direction with Adam (``--meta-lr``), so the defaults below keep the paper's meta-batch,
inner steps and test-time steps and are otherwise ours.

Paper accuracies (Table 1, Omniglot), in both of its evaluation protocols (Sec. 5): transductive
(a task's test samples share batch-norm statistics, as in MAML's published numbers) 5w1s 97.68,
5w5s 99.48, 20w1s 89.43, 20w5s 97.12; non-transductive (each test sample classified on a batch
of the training samples and itself) 95.39, 98.90, 88.14, 96.65. The script tests with both
protocols by default (``--test-protocol both``); results.json keys the non-transductive ones
``"5w1s non-transductive"``, etc.

    python examples/vision/reptile_omniglot.py --root path/to/omniglot [--backend jax]
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "Reptile",
    "paper_source": "Nichol et al. 2018, Table 1 (Reptile + Transduction; Reptile, non-transductive)",
    "paper": {
        "5w1s": 0.9768,
        "5w5s": 0.9948,
        "20w1s": 0.8943,
        "20w5s": 0.9712,
        "5w1s non-transductive": 0.9539,
        "5w5s non-transductive": 0.9890,
        "20w1s non-transductive": 0.8814,
        "20w5s non-transductive": 0.9665,
    },
    "test_protocol": "both",
    "algorithm": "reptile",
    "dataset": "omniglot",
    "ways": 5,
    "shots": 1,
    "queries": 1,
    "meta_batch": 5,
    "lr": 0.1,
    "meta_lr": 1e-3,
    "adaptation_steps": 5,
    "test_adaptation_steps": 50,
    "iterations": 100000,
    "eval_every": 2000,
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
