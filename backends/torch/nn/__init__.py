"""``l2l.nn`` for the torch backend: layers for learned updates and few-shot heads."""

from ._kronecker import KroneckerLinear as KroneckerLinear
from ._kronecker import KroneckerLSTM as KroneckerLSTM
from ._kronecker import KroneckerRNN as KroneckerRNN
from ._kronecker import kronecker_addmm as kronecker_addmm
from ._layers import Flatten as Flatten
from ._layers import Lambda as Lambda
from ._layers import freeze as freeze
from ._layers import unfreeze as unfreeze
from ._meta_module import MetaModule as MetaModule
from ._meta_module import ParameterTransform as ParameterTransform
from ._prototypical import PrototypicalClassifier as PrototypicalClassifier
from ._qp import solve_qp as solve_qp
from ._ridge import RidgeClassifier as RidgeClassifier
from ._scale import Scale as Scale
from ._svm import SVClassifier as SVClassifier

__all__ = [
    "Flatten",
    "KroneckerLSTM",
    "KroneckerLinear",
    "KroneckerRNN",
    "Lambda",
    "MetaModule",
    "ParameterTransform",
    "PrototypicalClassifier",
    "RidgeClassifier",
    "SVClassifier",
    "Scale",
    "freeze",
    "kronecker_addmm",
    "solve_qp",
    "unfreeze",
]
