"""What every gradient-based learner shares: wrapping a module, flags, checked gradients, and the
functional contract (``meta_parameters``, ``init``, ``from_variables``, the functional ``adapt``
and ``task_loss``) on top of ``_functional``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ...._checks import check_learning_rate, nonfinite_loss_error
from ...._contract import check_task
from ....transforms import sgd
from ....transforms._inner import check_inner, resolve_inner
from .._module_utils import clone_module, update_module
from ..optim._parameter_update import AdaptationError, differentiate


def check_lr(lr, argument: str = "lr"):
    """A learning rate: a finite Python number >= 0 or a tensor of them (learned or scheduled rates)."""
    return check_learning_rate(lr, argument, arrays=("torch",))  # one wording for both backends


def check_loss(loss: torch.Tensor) -> None:
    """Refuse a non-finite adaptation loss: an update from it would silently poison the clone."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not bool(torch.isfinite(loss.detach())):
        raise nonfinite_loss_error("adapt: the support loss", loss.item())  # one wording for both backends


class BaseLearner(torch.nn.Module):
    """A module wrapper with the learn2learn calling convention: ``learner(x) == module(x)``.

    Subclasses implement ``adapt(loss)``; ``clone()`` returns a differentiable copy (parameters
    cloned with ``clone_module``, buffers copied, never shared silently).
    """

    def __init__(
        self,
        module: torch.nn.Module | None = None,
        first_order: bool = False,
        allow_unused: bool | None = None,
        allow_nograd: bool = False,
    ):
        super().__init__()
        # module=None is learn2learn's BaseLearner() form: a subclass (its MAML++ example's
        # MAMLpp) calls super().__init__() and assigns self.module itself.
        if module is not None and not isinstance(module, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.first_order = bool(first_order)
        self.allow_nograd = bool(allow_nograd)
        self.allow_unused = self.allow_nograd if allow_unused is None else bool(allow_unused)
        self.inner = None
        self.inner_state = None  # the inner optimizer's state after the last adapt (per clone)

    def _set_inner(self, lr, inner) -> None:
        """``self.lr`` and ``self.inner`` from the ``lr=``/``inner=`` pair (``transforms._inner``)."""
        self.lr, self.inner = resolve_inner(type(self).__name__, lr, inner, check_lr)

    def inner_transform(self):
        """The inner optimizer: ``inner`` when given, else ``sgd(lr)`` (rebuilt per call, so a
        changed or cloned ``lr`` tensor is the one used)."""
        return self.inner if self.inner is not None else sgd(self.lr)

    def inner_batches(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> list:
        """The ``steps`` inner batches ``[(x_i, y_i)]`` of an adaptation on the support set
        ``(x [s, ...], y [s])``: the whole set each step (Reptile's minibatches override this)."""
        return [(x, y)] * steps

    def _inner_step(self, module: torch.nn.Module, grads, scales=None) -> None:
        """Apply one step of the inner optimizer to ``module`` in place, differentiably.

        The state lives on this learner (``inner_state``: created at the first ``adapt``, copied
        by ``clone``), so successive ``adapt`` calls continue one optimizer run and gradients
        flow through it. ``scales`` (Meta-SGD's learned rates) multiply the updates.
        """
        params = list(module.parameters())
        transform = self.inner_transform()
        state = transform.init(params) if self.inner_state is None else self.inner_state
        updates, self.inner_state = transform.update(grads, state, params)
        if scales is not None:
            updates = [None if u is None else rate * u for u, rate in zip(updates, scales)]
        update_module(module, updates)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    # Names this library probes on a learner with getattr(learner, name, default): a wrapped
    # model's own `features` or `adaptation_steps` must not pass for the learner's.
    _NOT_FORWARDED = frozenset(
        {
            "features",
            "head",
            "adaptation_steps",
            "flax_layout",
            "functional_task_loss",
            "plain_type",
        }
    )

    def __getattr__(self, name: str):
        """learn2learn's fallback: an attribute the learner lacks is read from the wrapped module
        (its MAML++ example calls ``maml.backup_stats()``, a method of the model). Private names
        and ``_NOT_FORWARDED`` are never forwarded."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            module = self.__dict__.get("_modules", {}).get("module")
            if module is None or name.startswith("_") or name in self._NOT_FORWARDED:
                raise
            return getattr(module, name)

    # -- the functional contract (l2l_multi._contract.GradientBasedLearner) ------------------
    functional = False  # learners whose inner loop _functional reproduces (vmap, functional adapt)
    learned_rates = False  # Meta-SGD: meta_params["lrs"] multiply the inner updates
    detached_inner_loop = False  # Reptile: the inner loop starts from detached meta-parameters

    def meta_parameters(self, layout: str = "torch") -> dict:
        """The meta-parameter tree: ``{"model": {name: tensor}, ...}`` of this learner's live
        parameters (``"lrs"`` for Meta-SGD, ``"transform"`` for GBML, ``"features"`` for ANIL).

        Its leaves *are* the module's parameters, so ``meta_batch_loss(algorithm,
        algorithm.meta_parameters(), ...).loss.backward()`` fills their ``.grad``; a dict of the
        same structure with other tensors is the functional form (``torch.func.grad`` over it).
        ``layout="flax"``: copies in the jax backend's layout (``l2l_multi.interop``).
        """
        tree = {"model": dict(self.module.named_parameters())}
        tree.update(self._extra_meta_parameters())
        if layout == "torch":
            return tree
        if layout != "flax":
            raise ValueError(f"layout={layout!r} is not one of ('torch', 'flax')")
        return self._flax_layout(tree)

    def _extra_meta_parameters(self) -> dict:
        return {}

    def _flax_layout(self, tree: dict) -> dict:
        from ....interop import torch_to_flax  # the interop layer imports jax: only when asked

        converted = {"model": torch_to_flax(self.module)}
        for key, value in tree.items():
            if key == "model":
                continue
            if key == "features":
                converted[key] = torch_to_flax(self.features)
            elif key == "lrs":
                converted[key] = _rates_in_flax_layout(self.module, value)
            else:
                raise ValueError(f"meta_parameters(layout='flax') cannot convert the {key!r} entry yet")
        return converted

    def init(self, key, x) -> dict:
        """Fresh meta-parameters: every layer of the learner's network(s) with a
        ``reset_parameters`` method is re-initialised under the seed ``key`` (an int; the global
        random state is left as it was), and ``meta_parameters()`` is returned.

        ``x`` (a sample input ``[N, ...]``) is accepted for the shared signature; a torch module's
        shapes are fixed at construction.
        """
        from ._functional import reset_parameters

        reset_parameters(self._networks(), key)
        return self.meta_parameters()

    def _networks(self) -> list[torch.nn.Module]:
        return [self.module]

    def from_variables(self, variables) -> dict:
        """Load the model's variables (``{name: tensor}`` as ``state_dict()`` names them, buffers
        optional; e.g. from ``l2l_multi.interop.flax_to_torch``) into the module and return
        ``meta_parameters()``."""
        _load_variables(self.module, variables, "variables")
        return self.meta_parameters()

    def precondition(self, meta_params: Mapping, grads: dict) -> dict:
        """GBML's learnable transform of the inner gradients; the identity elsewhere."""
        return grads

    def _functional_options(self, loss, steps, inner) -> tuple:
        from ...._contract import resolve_steps

        if not self.functional:
            raise TypeError(
                f"{type(self).__name__} has no functional form yet; use learner = algorithm.clone() and "
                "learner.adapt(loss)"
            )
        if inner is not None:
            inner = check_inner(inner)
        return (F.cross_entropy if loss is None else loss), resolve_steps(steps), inner

    def adapt(self, *args, **kwargs):
        """Adapt, in one of two call forms.

        * Functional (the contract shared with the jax backend):
          ``adapt(meta_params, x, y, *, loss=None, steps=1, inner=None, train=True)`` returns
          the adapted module's parameters ``{name: tensor}`` after ``steps`` inner steps on
          ``(x [s, ...], y [s])`` (``loss=None``: cross-entropy; ``inner``: an inner optimizer
          for this call instead of the learner's); nothing is changed in place, and the result
          is differentiable w.r.t. ``meta_params`` (``algorithm.meta_parameters()`` or a dict of
          the same structure). Run the adapted model with
          ``torch.func.functional_call(algorithm.module, adapted, (x,))``.
        * Stateful (learn2learn's): ``learner.adapt(loss, first_order=None, allow_unused=None,
          allow_nograd=None)`` on a ``clone()``: one inner step on the scalar tensor ``loss``, in
          place and differentiable; returns None. See the class docstring.

        Raises ``TypeError`` for any other call form.
        """
        first = args[0] if args else kwargs.get("meta_params", kwargs.get("loss"))
        if isinstance(first, Mapping):
            try:
                bound = _FUNCTIONAL_ADAPT.bind(self, *args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{type(self).__name__}.adapt: {error}. {_ADAPT_FORMS}") from None
            return self._adapt_functional(**{k: v for k, v in bound.arguments.items() if k != "self"})
        if isinstance(first, torch.Tensor):
            return self.adapt_loss(*args, **kwargs)
        raise TypeError(
            f"{type(self).__name__}.adapt got {type(first).__name__} as its first argument. {_ADAPT_FORMS}"
        )

    def adapt_loss(self, loss, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """The stateful step of ``adapt(loss)`` (learn2learn's form), implemented per learner."""
        raise NotImplementedError(f"{type(self).__name__} does not implement adapt(loss)")

    def _adapt_functional(self, meta_params, x, y, *, loss=None, steps=1, inner=None, train=True):
        from . import _functional

        loss, steps, inner = self._functional_options(loss, steps, inner)
        check_task(meta_params, x, y, "torch", cross_entropy=loss is F.cross_entropy)
        x, y = _functional.task_tensors(self, x=x, y=y)
        features = getattr(self, "features", None)
        with _functional.functional_mode(self.module, features, train=train):
            if features is not None:
                x = _functional.call(
                    features, _functional.check_tree(meta_params["features"], features, "features"), x
                )
            return _functional.inner_loop(self, meta_params, x, y, loss, steps, inner)

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        """``(query loss 0-d, query outputs [q, ...])`` after adapting ``meta_params`` on the
        support set ``[s, ...]``/``[s]`` and running the adapted model on ``query_x [q, ...]``;
        functional (nothing changes in place), differentiable w.r.t. ``meta_params``."""
        from . import _functional

        loss, steps, _ = self._functional_options(loss, steps, None)
        for x_name, x, y_name, y in (
            ("support_x", support_x, "support_y", support_y),
            ("query_x", query_x, "query_y", query_y),
        ):
            check_task(meta_params, x, y, "torch", x_name, y_name, cross_entropy=loss is F.cross_entropy)
        support_x, support_y, query_x, query_y = _functional.task_tensors(
            self, support_x=support_x, support_y=support_y, query_x=query_x, query_y=query_y
        )
        with _functional.functional_mode(self.module, getattr(self, "features", None), train=train):
            return _functional.task_loss(
                self, meta_params, support_x, support_y, query_x, query_y, loss, steps
            )

    def _options(self, first_order, allow_unused, allow_nograd) -> tuple[bool, bool, bool]:
        first_order = self.first_order if first_order is None else bool(first_order)
        allow_nograd = self.allow_nograd if allow_nograd is None else bool(allow_nograd)
        allow_unused = (allow_nograd or self.allow_unused) if allow_unused is None else bool(allow_unused)
        return first_order, allow_unused, allow_nograd

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A differentiable copy of this learner (same class) to adapt on one task.

        The flags default to this learner's; gradients of the copy's losses reach the
        original's parameters.
        """
        clone = clone_module(self)
        clone.first_order, clone.allow_unused, clone.allow_nograd = self._options(
            first_order, allow_unused, allow_nograd
        )
        return clone

    def _gradients(self, loss, parameters, first_order, allow_unused, allow_nograd, extra_retain=False):
        check_loss(loss)
        second_order = not first_order
        return differentiate(
            loss,
            parameters,
            create_graph=second_order,
            retain_graph=second_order or extra_retain,
            allow_unused=allow_unused,
            allow_nograd=allow_nograd,
        )


def _functional_adapt(self, meta_params, x, y, *, loss=None, steps=1, inner=None, train=True):
    """The functional call form of ``adapt`` (its signature is the contract's)."""


_FUNCTIONAL_ADAPT = inspect.signature(_functional_adapt)
_ADAPT_FORMS = (
    "The call forms are adapt(meta_params, x, y, *, loss=None, steps=1, inner=None, train=True) "
    "(functional: returns the adapted parameters) and learner.adapt(loss) on learner = algorithm.clone() "
    "(stateful, loss a scalar tensor)"
)
BaseLearner.adapt.__signature__ = _FUNCTIONAL_ADAPT  # what inspect (and the contract test) reads


def _load_variables(module: torch.nn.Module, variables, argument: str) -> None:
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"{argument} must be a dict {{name: tensor}} of the model, got {type(variables).__name__}"
        )
    own = dict(module.named_parameters())
    own.update(dict(module.named_buffers()))
    unknown = sorted(set(variables) - set(own))
    missing = sorted(name for name, _ in module.named_parameters() if name not in variables)
    if unknown or missing:
        raise ValueError(
            f"{argument} must name the model's parameters: missing {missing}, unexpected {unknown}"
        )
    with torch.no_grad():
        for name, value in variables.items():
            target = own[name]
            value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"{argument}[{name!r}] has shape {tuple(value.shape)}, the model's {tuple(target.shape)}"
                )
            target.copy_(value.to(device=target.device, dtype=target.dtype))


def _rates_in_flax_layout(module: torch.nn.Module, rates: dict) -> dict:
    """Meta-SGD's rates (named like ``module``'s parameters) in the flax layout: convert a copy of
    the module whose parameters hold the rates."""
    import copy

    from ....interop import torch_to_flax

    twin = copy.deepcopy(module)
    with torch.no_grad():
        for name, param in twin.named_parameters():
            param.copy_(rates[name])
    return torch_to_flax(twin)["params"]


__all__ = ["AdaptationError", "BaseLearner", "check_loss", "check_lr"]
