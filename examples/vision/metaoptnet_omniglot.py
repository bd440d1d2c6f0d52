"""MetaOptNet on Omniglot (Lee, Maji, Ravichandran and Soatto, CVPR 2019).

A differentiable linear classifier fitted on each task's support embeddings: ``--head svm``
(the paper's Crammer-Singer SVM, solved by the library's batched QP) or ``--head ridge``
(ridge regression as in Bertinetto et al.'s R2D2); both backends. The paper
evaluates on mini-ImageNet, tieredImageNet, CIFAR-FS and FC100 with a ResNet-12 and reports no
Omniglot number; here the Omniglot conv net, ProtoNets-style training (Adam 1e-3 halved every
2000 episodes, 5 queries per class) and 5- and 20-way tests. See metaoptnet_miniimagenet.py
for the paper's datasets.

    python examples/vision/metaoptnet_omniglot.py --root path/to/omniglot --head svm
    python examples/vision/metaoptnet_omniglot.py --root ... --head ridge --backend jax
"""

from l2l_multi.experiment import fewshot

DEFAULTS = {
    "method": "MetaOptNet",
    "paper_source": "no Omniglot number in Lee et al. 2019",
    "paper": {},
    "algorithm": "metaoptnet",
    "dataset": "omniglot",
    "head": "ridge",
    "ways": 5,
    "shots": 1,
    "queries": 5,
    "test_ways": [5, 20],
    "test_queries": 15,
    "meta_batch": 8,
    "meta_lr": 1e-3,
    "meta_lr_halve_every": 2000,
    "iterations": 20000,
    "eval_every": 1000,
    "adaptation_steps": 0,
}

if __name__ == "__main__":
    fewshot.main(DEFAULTS, __doc__.splitlines()[0])
