"""Prototypical Networks on mini-ImageNet, CIFAR-FS and FC100 (Snell, Swersky and Zemel, 2017).

Defaults are the paper's mini-ImageNet settings (Sec. 3.2): the 4-block conv net, 1-shot models
trained 30-way and 5-shot models 20-way (pass --ways 20 --shots 5), 15 queries per class, Adam
1e-3 halved every 2000 episodes; tested 5-way. Paper accuracies: mini-ImageNet 49.42 (5w1s),
68.20 (5w5s) (Snell et al. 2017, Table 2); CIFAR-FS 55.5 and 72.0 (Bertinetto et al. 2019,
Table 1); FC100 35.3 and 48.6 (Oreshkin et al. 2018, Table 2). Needs the dataset files in --root.

    python examples/vision/protonet_miniimagenet.py --root ~/data [--dataset fc100] [--backend jax]
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "ProtoNets",
    "algorithm": "protonet",
    "dataset": "mini-imagenet",
    "ways": 30,
    "shots": 1,
    "queries": 15,
    "test_ways": [5],
    "test_queries": 15,
    "meta_batch": 1,
    "meta_lr": 1e-3,
    "meta_lr_halve_every": 2000,
    "adaptation_steps": 0,
    "iterations": 20000,
    "eval_every": 1000,
    "eval_tasks": 100,
    "eval_batch": 10,
    "by_dataset": {
        "mini-imagenet": {
            "paper": {"5w1s": 0.4942, "5w5s": 0.6820},
            "paper_source": "Snell et al. 2017, Table 2",
        },
        "cifarfs": {
            "paper": {"5w1s": 0.555, "5w5s": 0.720},
            "paper_source": "Bertinetto et al. 2019, Table 1",
        },
        "fc100": {"paper": {"5w1s": 0.353, "5w5s": 0.486}, "paper_source": "Oreshkin et al. 2018, Table 2"},
    },
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
