"""ANIL on mini-ImageNet, CIFAR-FS and FC100 (Raghu, Raghu, Bengio and Vinyals, ICLR 2020).

Only the head adapts; settings follow MAML's mini-ImageNet protocol (5 inner steps of size 0.01,
10 at test time, 15 queries per class, meta-batch 4, Adam 1e-3). Paper accuracies on
mini-ImageNet (Table 2): 46.7 (5w1s), 61.5 (5w5s). Needs the dataset files in --root.

    python examples/vision/anil_miniimagenet.py --root ~/data [--dataset cifarfs] [--backend jax]
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "ANIL",
    "algorithm": "anil",
    "dataset": "mini-imagenet",
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
    "by_dataset": {
        "mini-imagenet": {
            "paper": {"5w1s": 0.467, "5w5s": 0.615},
            "paper_source": "Raghu et al. 2020, Table 2",
        },
        "cifarfs": {"paper": {}, "paper_source": "no published ANIL number"},
        "fc100": {"paper": {}, "paper_source": "no published ANIL number"},
    },
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
