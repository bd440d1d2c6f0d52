# Type stub for ``l2l.nn``, whose names are resolved in the current backend at access. First the
# names both backends provide (arrays typed ``Any``: torch.Tensor on torch, jax.Array on jax),
# then the names of one backend only. tests/test_stubs.py checks this file against both backends.
from typing import Any

def solve_qp(
    Q: Any,
    p: Any,
    G: Any,
    h: Any,
    A: Any = None,
    b: Any = None,
    max_iterations: int = 50,
    tolerance: Any = ...,
) -> Any: ...

# torch only
Flatten: Any
KroneckerLSTM: Any
KroneckerLinear: Any
KroneckerRNN: Any
Lambda: Any
MetaModule: Any
ParameterTransform: Any
PrototypicalClassifier: Any
RidgeClassifier: Any
SVClassifier: Any
Scale: Any
freeze: Any
kronecker_addmm: Any
unfreeze: Any

# jax only
prototype_logits: Any
ridge_logits: Any
svm_logits: Any
