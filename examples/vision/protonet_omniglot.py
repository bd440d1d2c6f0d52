"""Prototypical Networks on Omniglot (Snell, Swersky and Zemel, NeurIPS 2017).

Defaults are the paper's Omniglot settings (Sec. 3.1): four blocks of 64 3x3 filters, batch norm,
ReLU and 2x2 max-pooling (model "omniglot-cnn-pool", a 64-d embedding), Adam with learning rate
1e-3 halved every 2000 episodes, 1-shot models trained with 60 classes per episode and 5 queries
per class, tested 5-way and 20-way, trained on the training and validation characters together
(1200 characters x 4 rotations = 4800 classes; ``--train-splits train`` keeps the validation
classes held out, for model selection). Paper accuracies (Table 1): 5-way 1-shot 98.8,
5-way 5-shot 99.7, 20-way 1-shot 96.0, 20-way 5-shot 98.9. The paper's code tests with the
running batch-norm statistics accumulated in training (``model.eval()``): ``--batch-norm running``
does the same (results keyed "5w1s running-statistics", the keys these numbers are compared
with); the default tests with each task's batch statistics.

    python examples/vision/protonet_omniglot.py --root path/to/omniglot [--backend jax]
    python examples/vision/protonet_omniglot.py --shots 5 --root ...          # the 5-shot model
    python examples/vision/protonet_omniglot.py --batch-norm running --root ... # the paper's test protocol
    python examples/vision/protonet_omniglot.py --quick --root ...            # seconds
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "ProtoNets",
    "paper_source": "Snell et al. 2017, Table 1",
    # Table 1 (tested with running statistics); the plain keys compare the default protocol with them
    "paper": {
        "5w1s": 0.988,
        "20w1s": 0.960,
        "5w5s": 0.997,
        "20w5s": 0.989,
        "5w1s running-statistics": 0.988,
        "20w1s running-statistics": 0.960,
        "5w5s running-statistics": 0.997,
        "20w5s running-statistics": 0.989,
    },
    "algorithm": "protonet",
    "dataset": "omniglot",
    "model": "omniglot-cnn-pool",
    "train_splits": ["train", "validation"],
    "ways": 60,
    "shots": 1,
    "queries": 5,
    "test_ways": [5, 20],
    "test_queries": 15,
    "meta_batch": 1,
    "meta_lr": 1e-3,
    "meta_lr_halve_every": 2000,
    "iterations": 20000,
    "eval_every": 1000,
    "adaptation_steps": 0,
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
