"""Reptile on Omniglot (Nichol, Achiam and Schulman, 2018, arXiv:1803.02999).

Reptile moves the initialisation towards the weights each task's inner loop reaches. The
defaults are the paper's Omniglot 5-way settings (its code's ``run_omniglot.py`` commands, the
same for 1 and 5 test shots): each training task has 10 samples per class (``--shots 10``), 5
inner steps of Adam (rate 1e-3, beta1 0) on batches of 10 of them, one Adam whose moments and
step count pass from task to task (``--inner-state carried``: the code's single TensorFlow Adam
is never reset; every test task starts from its state and leaves it as it was), a meta-step of
size 1 annealed linearly to 0 (plain steps: ``--meta-optimizer sgd``), 5 tasks per meta-batch,
100,000 meta-updates, and 50 inner steps on batches of 5 at test time (``--test-inner-batch 5``:
the whole support set for 1 shot, 5 of the 25 samples per step for 5 shots). One run tests 1 and
5 shots (``--test-shots 1 5``), in both of the paper's protocols. Where we differ: a step's batch
is the next samples in class-interleaved order (the paper's: a random draw without replacement).

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
    "shots": 10,
    "queries": 1,
    "test_shots": [1, 5],
    "meta_batch": 5,
    "lr": 1e-3,
    "inner": "adam",
    "inner_beta1": 0.0,
    "inner_batch": 10,
    "inner_state": "carried",
    "test_inner_batch": 5,
    "meta_optimizer": "sgd",
    "meta_lr": 1.0,
    "meta_lr_final": 0.0,
    "adaptation_steps": 5,
    "test_adaptation_steps": 50,
    "iterations": 100000,
    "eval_every": 2000,
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
