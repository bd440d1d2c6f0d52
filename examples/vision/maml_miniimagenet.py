"""MAML on mini-ImageNet, CIFAR-FS and FC100 (Finn, Abbeel and Levine, ICML 2017).

Defaults are the paper's mini-ImageNet settings (Appendix A.1): the 4-block conv net, 5 inner
steps of size 0.01 in training and 10 at test time, 15 queries per class, meta-batch 4 tasks
(2 for 5-shot), Adam with meta learning rate 1e-3, 60,000 meta-updates. Our conv net has 64
filters per block; the paper used 32 on mini-ImageNet. Paper accuracies: mini-ImageNet 48.70
(5w1s) and 63.11 (5w5s) (Finn et al. 2017, Table 2); CIFAR-FS 58.9 and 71.5 (Bertinetto et al.
2019, Table 1). Needs the dataset files in --root (they are not downloaded in tests).

    python examples/vision/maml_miniimagenet.py --root ~/data [--dataset cifarfs] [--backend jax]
    python examples/vision/maml_miniimagenet.py --shots 5 --meta-batch 2 --root ~/data
"""

from l2l_multi.experiment import fewshot

SETTINGS = {
    "ways": 5,
    "shots": 1,
    "queries": 15,
    "meta_batch": 4,
    "lr": 0.01,
    "meta_lr": 1e-3,
    "adaptation_steps": 5,
    "test_adaptation_steps": 10,
    "iterations": 60000,
    "eval_every": 1000,
    "eval_tasks": 100,
    "eval_batch": 10,
}
DEFAULTS = {
    "method": "MAML",
    "algorithm": "maml",
    "dataset": "mini-imagenet",
    **SETTINGS,
    "by_dataset": {
        "mini-imagenet": {
            "paper": {"5w1s": 0.4870, "5w5s": 0.6311},
            "paper_source": "Finn et al. 2017, Table 2",
        },
        "cifarfs": {
            "paper": {"5w1s": 0.589, "5w5s": 0.715},
            "paper_source": "Bertinetto et al. 2019, Table 1",
        },
        "fc100": {"paper": {}, "paper_source": "no published MAML number with this protocol"},
    },
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
