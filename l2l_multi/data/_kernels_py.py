"""Pure-Python twin of the compiled sampling kernels (``_kernels.pyx``).

Both implement the same algorithms on the same random stream, so for one seed they return
identical arrays; tests check this. The twin is used when the extension is missing or when
``L2L_PUREPYTHON=1``.

Random stream: SplitMix64 (Steele, Lea & Flood, 2014). A draw in ``[0, bound)`` is
``((z >> 32) * bound) >> 32`` for a 64-bit output ``z``; for bounds below 2**32 this is exact
integer arithmetic in C and in Python, hence bit-identical in both modes.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
MAX_POPULATION = 1 << 32


def _unsigned64(value: int) -> int:
    # The compiled kernels take ``uint64_t`` seeds and raise OverflowError outside [0, 2**64);
    # masking here instead would give 2**64 the stream of 0 in this mode only.
    if not 0 <= value <= _MASK:
        raise OverflowError(f"seed {value} is outside [0, 2**64): seeds are unsigned 64-bit ints")
    return value


def mix64(value: int) -> int:
    """SplitMix64 output for state ``value`` (an int in ``[0, 2**64)``): a 64-bit integer mixer."""
    z = (_unsigned64(value) + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


class _Stream:
    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = _unsigned64(seed)

    def below(self, bound: int) -> int:
        self.state = (self.state + _GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * _MIX1) & _MASK
        z = ((z ^ (z >> 27)) * _MIX2) & _MASK
        z ^= z >> 31
        return ((z >> 32) * bound) >> 32


def _partial_shuffle(stream: _Stream, population: int, n: int) -> list[int]:
    # Fisher-Yates on an implicit identity array; the dict holds only the swapped slots.
    swapped: dict[int, int] = {}
    chosen = []
    for i in range(n):
        j = i + stream.below(population - i)
        value_j = swapped.get(j, j)
        swapped[j] = swapped.get(i, i)
        chosen.append(value_j)
    return chosen


def choose(population: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct integers from ``range(population)`` in random order; int64[n]."""
    if not 0 <= n <= population < MAX_POPULATION:
        raise ValueError(f"need 0 <= n <= population < 2**32, got n={n}, population={population}")
    return np.asarray(_partial_shuffle(_Stream(seed), population, n), dtype=np.int64)


def sample_shots(offsets, members, classes, k: int, replacement: bool, seed: int) -> np.ndarray:
    """For each class ``c`` in ``classes``, ``k`` members of ``members[offsets[c]:offsets[c+1]]``.

    Returns int64[len(classes) * k], class-major. Without replacement each class must hold at
    least ``k`` members (the caller checks, to name the offending label in its error).
    """
    stream = _Stream(seed)
    out = []
    for c in classes.tolist():
        start = int(offsets[c])
        size = int(offsets[c + 1]) - start
        if replacement:
            picks = [stream.below(size) for _ in range(k)]
        else:
            if k > size:
                raise ValueError(f"class {c} has {size} members, fewer than k={k}")
            picks = _partial_shuffle(stream, size, k)
        out.extend(int(members[start + p]) for p in picks)
    return np.asarray(out, dtype=np.int64)


def fused_ways_shots(offsets, members, candidates, n: int, k: int, replacement: bool, seed: int):
    """``n`` classes drawn from ``candidates``, then ``k`` shots of each, on one stream.

    Returns ``(classes int64[n], indices int64[n * k])``.
    """
    classes = candidates[choose(len(candidates), n, seed)]
    indices = sample_shots(offsets, members, classes, k, replacement, mix64(seed))
    return classes, indices


def group_by_label(label_ids, num_labels: int):
    """Stable counting sort: ``(offsets int64[num_labels + 1], members int64[N])``.

    ``members[offsets[c]:offsets[c+1]]`` are the positions holding label id ``c``, ascending.
    """
    label_ids = np.asarray(label_ids, dtype=np.int64)
    outside = np.flatnonzero((label_ids < 0) | (label_ids >= num_labels))
    if outside.size:
        i = int(outside[0])
        raise ValueError(f"label id {label_ids[i]} at position {i} is outside [0, {num_labels})")
    counts = np.bincount(label_ids, minlength=num_labels)
    offsets = np.zeros(num_labels + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    members = np.argsort(label_ids, kind="stable").astype(np.int64)
    return offsets, members


REMAP_NONE, REMAP_ORDERED, REMAP_SHUFFLED = 0, 1, 2


class SeedStream:
    """The per-task stream of 64-bit seeds: task ``i`` of base seed ``s`` starts at
    ``mix64(mix64(s) ^ i)``; each draw advances the state by the golden gamma and mixes it."""

    __slots__ = ("_state",)

    def __init__(self, state: int) -> None:
        self._state = _unsigned64(state)

    @classmethod
    def for_task(cls, base_seed: int, task_index: int):
        # the task index wraps as the compiled kernel's int64 -> uint64 cast does
        return cls(mix64(mix64(base_seed) ^ (task_index & _MASK)))

    def next_seed(self) -> int:
        """A fresh 64-bit seed (int in ``[0, 2**64)``)."""
        self._state = (self._state + _GOLDEN) & _MASK
        return mix64(self._state)


def plan_tasks(
    offsets,
    members,
    candidates,
    n: int,
    k: int,
    replacement: bool,
    fused: bool,
    remap: int,
    consecutive: bool,
    base_seed: int,
    task_indices,
):
    """Many tasks of the pipeline ``NWays, KShots`` (or ``FusedNWaysKShots``), ``LoadData``,
    optional ``RemapLabels`` and ``ConsecutiveLabels``, in one call.

    Draws exactly the seeds the transforms would draw one by one, so task ``i`` is identical to
    the one the transform chain builds. Returns ``(indices int64[B, n*k], labels int64[B, n*k])``;
    ``labels`` are the remapped labels (undefined when ``remap == REMAP_NONE``).
    """
    count = len(task_indices)
    indices = np.empty((count, n * k), dtype=np.int64)
    labels = np.zeros((count, n * k), dtype=np.int64)
    for row, task_index in enumerate(np.asarray(task_indices).tolist()):
        stream = SeedStream.for_task(base_seed, task_index)
        first = stream.next_seed()
        classes = candidates[choose(len(candidates), n, first)]
        shots_seed = mix64(first) if fused else stream.next_seed()
        shots = sample_shots(offsets, members, classes, k, replacement, shots_seed).reshape(n, k)
        order = np.arange(n, dtype=np.int64)
        if remap == REMAP_SHUFFLED:
            order = choose(n, n, stream.next_seed())
        if consecutive:
            shots = shots[np.argsort(order, kind="stable")]
            order = np.arange(n, dtype=np.int64)
        indices[row] = shots.ravel()
        labels[row] = np.repeat(order, k)
    return indices, labels


class PlanSampler:
    """``plan_tasks`` with its arguments bound once (the compiled twin also keeps its scratch
    buffers between calls). ``plan(base_seed, task_indices)`` returns what ``plan_tasks``
    returns; ``plan_one(base_seed, task_index)`` returns ``(indices int64[n*k], labels
    int64[n*k])`` of one task."""

    def __init__(
        self,
        offsets,
        members,
        candidates,
        n: int,
        k: int,
        replacement: bool,
        fused: bool,
        remap: int,
        consecutive: bool,
    ) -> None:
        self._offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self._members = np.ascontiguousarray(members, dtype=np.int64)
        self._candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        sizes = self._offsets[self._candidates + 1] - self._offsets[self._candidates]
        if not 0 < n <= len(self._candidates) < MAX_POPULATION:
            raise ValueError(f"need 0 < n <= {len(self._candidates)} candidate classes, got n={n}")
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        if not replacement and sizes.min() < k:
            c = int(self._candidates[np.argmin(sizes)])
            raise ValueError(f"class {c} has {int(sizes.min())} members, fewer than k={k}")
        self.n, self.k, self.replacement, self.fused = int(n), int(k), bool(replacement), bool(fused)
        self.remap, self.consecutive = int(remap), bool(consecutive)

    def plan(self, base_seed: int, task_indices):
        return plan_tasks(
            self._offsets,
            self._members,
            self._candidates,
            self.n,
            self.k,
            self.replacement,
            self.fused,
            self.remap,
            self.consecutive,
            base_seed,
            task_indices,
        )

    def plan_one(self, base_seed: int, task_index: int):
        indices, labels = self.plan(base_seed, [task_index])
        return indices[0], labels[0]
