# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled sampling kernels; see ``_kernels_py.py`` for the pure-Python twin and the contract.

Typed memoryviews over int64 index arrays only: no per-sample Python objects, no numpy headers.
"""

from libc.stdint cimport int64_t, uint64_t
import numpy as np

cdef uint64_t _GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t _MIX1 = 0xBF58476D1CE4E5B9ULL
cdef uint64_t _MIX2 = 0x94D049BB133111EBULL
MAX_POPULATION = 1 << 32


cdef inline uint64_t _below(uint64_t* state, uint64_t bound) noexcept nogil:
    state[0] += _GOLDEN
    cdef uint64_t z = state[0]
    z = (z ^ (z >> 30)) * _MIX1
    z = (z ^ (z >> 27)) * _MIX2
    z = z ^ (z >> 31)
    return ((z >> 32) * bound) >> 32


cdef inline uint64_t _mix(uint64_t value) noexcept nogil:
    cdef uint64_t z = value + _GOLDEN
    z = (z ^ (z >> 30)) * _MIX1
    z = (z ^ (z >> 27)) * _MIX2
    return z ^ (z >> 31)


cpdef uint64_t mix64(uint64_t value):
    return _mix(value)


cdef void _partial_shuffle(uint64_t* state, int64_t[::1] scratch, int64_t population,
                           int64_t n) noexcept nogil:
    # scratch[:population] must hold 0..population-1; afterwards scratch[:n] is the sample.
    cdef int64_t i, j, tmp
    for i in range(n):
        j = i + <int64_t>_below(state, <uint64_t>(population - i))
        tmp = scratch[j]
        scratch[j] = scratch[i]
        scratch[i] = tmp


def choose(int64_t population, int64_t n, uint64_t seed):
    if not (0 <= n <= population < MAX_POPULATION):
        raise ValueError(f"need 0 <= n <= population < 2**32, got n={n}, population={population}")
    scratch_array = np.arange(population, dtype=np.int64)
    cdef int64_t[::1] scratch = scratch_array
    cdef uint64_t state = seed
    with nogil:
        _partial_shuffle(&state, scratch, population, n)
    return scratch_array[:n].copy()


def sample_shots(const int64_t[::1] offsets, const int64_t[::1] members,
                 const int64_t[::1] classes, int64_t k, bint replacement, uint64_t seed):
    cdef Py_ssize_t num_classes = classes.shape[0]
    cdef int64_t c, start, size, i, largest = 0
    for i in range(num_classes):
        c = classes[i]
        size = offsets[c + 1] - offsets[c]
        if not replacement and k > size:
            raise ValueError(f"class {c} has {size} members, fewer than k={k}")
        largest = max(largest, size)
    out_array = np.empty(num_classes * k, dtype=np.int64)
    scratch_array = np.empty(max(largest, 1), dtype=np.int64)
    cdef int64_t[::1] out = out_array
    cdef int64_t[::1] scratch = scratch_array
    cdef uint64_t state = seed
    cdef Py_ssize_t position = 0
    cdef int64_t s
    with nogil:
        for i in range(num_classes):
            c = classes[i]
            start = offsets[c]
            size = offsets[c + 1] - start
            if replacement:
                for s in range(k):
                    out[position] = members[start + <int64_t>_below(&state, <uint64_t>size)]
                    position += 1
            else:
                for s in range(size):
                    scratch[s] = s
                _partial_shuffle(&state, scratch, size, k)
                for s in range(k):
                    out[position] = members[start + scratch[s]]
                    position += 1
    return out_array


def fused_ways_shots(const int64_t[::1] offsets, const int64_t[::1] members,
                     candidates, int64_t n, int64_t k, bint replacement, uint64_t seed):
    candidates = np.asarray(candidates, dtype=np.int64)
    classes = candidates[choose(len(candidates), n, seed)]
    indices = sample_shots(offsets, members, classes, k, replacement, mix64(seed))
    return classes, indices


def group_by_label(label_ids, int64_t num_labels):
    label_array = np.ascontiguousarray(label_ids, dtype=np.int64)
    cdef const int64_t[::1] labels = label_array
    cdef Py_ssize_t n = labels.shape[0], i
    offsets_array = np.zeros(num_labels + 1, dtype=np.int64)
    members_array = np.empty(n, dtype=np.int64)
    cursor_array = np.empty(num_labels, dtype=np.int64)
    cdef int64_t[::1] offsets = offsets_array
    cdef int64_t[::1] members = members_array
    cdef int64_t[::1] cursor = cursor_array
    cdef int64_t c
    for i in range(n):
        c = labels[i]
        if c < 0 or c >= num_labels:
            raise ValueError(f"label id {c} at position {i} is outside [0, {num_labels})")
    with nogil:
        for i in range(n):
            offsets[labels[i] + 1] += 1
        for c in range(num_labels):
            offsets[c + 1] += offsets[c]
            cursor[c] = offsets[c]
        for i in range(n):
            c = labels[i]
            members[cursor[c]] = i
            cursor[c] += 1
    return offsets_array, members_array


cdef inline void _shuffle_prefix(uint64_t* state, int64_t* scratch, int64_t population,
                                 int64_t n, int64_t* swaps) noexcept nogil:
    # _partial_shuffle on a raw buffer, recording each swap so that _undo_shuffle can restore
    # the identity in O(n) instead of rewriting all ``population`` slots for the next task.
    cdef int64_t i, j, tmp
    for i in range(n):
        j = i + <int64_t>_below(state, <uint64_t>(population - i))
        swaps[i] = j
        tmp = scratch[j]
        scratch[j] = scratch[i]
        scratch[i] = tmp


cdef inline void _undo_shuffle(int64_t* scratch, int64_t n, const int64_t* swaps) noexcept nogil:
    cdef int64_t i, j, tmp
    for i in range(n - 1, -1, -1):
        j = swaps[i]
        tmp = scratch[j]
        scratch[j] = scratch[i]
        scratch[i] = tmp


cdef inline void _partial_shuffle_raw(uint64_t* state, int64_t* scratch, int64_t population,
                                      int64_t n) noexcept nogil:
    cdef int64_t i, j, tmp
    for i in range(n):
        j = i + <int64_t>_below(state, <uint64_t>(population - i))
        tmp = scratch[j]
        scratch[j] = scratch[i]
        scratch[i] = tmp


cdef void _plan_row(const int64_t* offsets, const int64_t* members, const int64_t* candidates,
                    int64_t num_candidates, int64_t n, int64_t k, bint replacement, bint fused,
                    int remap, bint consecutive, uint64_t base_seed, int64_t task_index,
                    int64_t* class_scratch, int64_t* shot_scratch, int64_t* order, int64_t* slot,
                    int64_t* swaps, int64_t* out_indices, int64_t* out_labels) noexcept nogil:
    # One task of the fusable chain. class_scratch holds 0..num_candidates-1 on entry and on exit;
    # swaps needs max(n, k) slots. The seeds are those the transforms draw one by one.
    cdef uint64_t state, first, shots_seed, stream
    cdef int64_t c, j, s, start, size, block
    state = _mix(_mix(base_seed) ^ <uint64_t>task_index)
    state += _GOLDEN
    first = _mix(state)
    if fused:
        shots_seed = _mix(first)
    else:
        state += _GOLDEN
        shots_seed = _mix(state)
    for j in range(n):
        order[j] = j
    if remap == 2:  # REMAP_SHUFFLED (constants in _kernels_py)
        state += _GOLDEN
        stream = _mix(state)
        _shuffle_prefix(&stream, order, n, n, swaps)
    # slot[j]: where class j's block of shots goes (by label when consecutive)
    for j in range(n):
        slot[j] = order[j] if consecutive else j
    stream = first
    _shuffle_prefix(&stream, class_scratch, num_candidates, n, swaps)
    stream = shots_seed
    for j in range(n):
        c = candidates[class_scratch[j]]
        start = offsets[c]
        size = offsets[c + 1] - start
        block = slot[j] * k
        if replacement:
            for s in range(k):
                out_indices[block + s] = members[start + <int64_t>_below(&stream, <uint64_t>size)]
        else:
            for s in range(size):
                shot_scratch[s] = s
            _partial_shuffle_raw(&stream, shot_scratch, size, k)
            for s in range(k):
                out_indices[block + s] = members[start + shot_scratch[s]]
        for s in range(k):
            out_labels[block + s] = order[j]
    _undo_shuffle(class_scratch, n, swaps)


cdef int64_t _check_plan(const int64_t[::1] offsets, const int64_t[::1] members,
                         const int64_t[::1] candidates, int64_t n, int64_t k,
                         bint replacement) except -1:
    # Validates the plan's arguments; returns the largest candidate class's size (at least 1).
    cdef int64_t num_candidates = candidates.shape[0], c, i, size, largest = 1
    cdef int64_t num_labels = offsets.shape[0] - 1
    if not (0 < n <= num_candidates < MAX_POPULATION):
        raise ValueError(f"need 0 < n <= {num_candidates} candidate classes, got n={n}")
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    for i in range(num_candidates):
        c = candidates[i]
        if c < 0 or c >= num_labels:
            raise ValueError(f"candidate class {c} is outside [0, {num_labels})")
        size = offsets[c + 1] - offsets[c]
        if size < 0 or offsets[c] < 0 or offsets[c + 1] > members.shape[0]:
            raise ValueError(f"offsets of class {c} do not lie in members[0:{members.shape[0]}]")
        largest = max(largest, size)
        if not replacement and size < k:
            raise ValueError(f"class {c} has {size} members, fewer than k={k}")
    return largest


def plan_tasks(const int64_t[::1] offsets, const int64_t[::1] members, candidates_in,
               int64_t n, int64_t k, bint replacement, bint fused, int remap, bint consecutive,
               uint64_t base_seed, task_indices_in):
    candidates_array = np.ascontiguousarray(candidates_in, dtype=np.int64)
    task_array = np.ascontiguousarray(task_indices_in, dtype=np.int64)
    cdef const int64_t[::1] candidates = candidates_array
    cdef const int64_t[::1] tasks = task_array
    cdef int64_t num_candidates = candidates.shape[0], count = tasks.shape[0], row
    cdef int64_t largest = _check_plan(offsets, members, candidates, n, k, replacement)
    indices_array = np.empty((count, n * k), dtype=np.int64)
    labels_array = np.zeros((count, n * k), dtype=np.int64)
    class_scratch_array = np.arange(num_candidates, dtype=np.int64)
    shot_scratch_array = np.empty(largest, dtype=np.int64)
    work_array = np.empty(2 * n + max(n, k), dtype=np.int64)  # order, slot, swaps
    cdef int64_t[:, ::1] out_indices = indices_array
    cdef int64_t[:, ::1] out_labels = labels_array
    cdef int64_t[::1] class_scratch = class_scratch_array
    cdef int64_t[::1] shot_scratch = shot_scratch_array
    cdef int64_t[::1] work = work_array
    if count == 0:
        return indices_array, labels_array
    with nogil:
        for row in range(count):
            _plan_row(&offsets[0], &members[0], &candidates[0], num_candidates, n, k,
                      replacement, fused, remap, consecutive, base_seed, tasks[row],
                      &class_scratch[0], &shot_scratch[0], &work[0], &work[n], &work[2 * n],
                      &out_indices[row, 0], &out_labels[row, 0])
    return indices_array, labels_array


cdef class PlanSampler:
    """``plan_tasks`` with its arguments bound once and its scratch buffers kept between calls.

    ``plan(base_seed, task_indices)`` returns what ``plan_tasks`` returns for the bound
    arguments; ``plan_one(base_seed, task_index)`` returns ``(indices int64[n*k],
    labels int64[n*k])`` of one task, the cheapest call for ``TaskDataset.sample()``. Not
    thread-safe (one sampler per thread): the scratch buffers are shared by the calls.
    """

    cdef const int64_t[::1] _offsets
    cdef const int64_t[::1] _members
    cdef const int64_t[::1] _candidates
    cdef int64_t[::1] _class_scratch
    cdef int64_t[::1] _shot_scratch
    cdef int64_t[::1] _work
    cdef readonly int64_t n, k
    cdef readonly bint replacement, fused, consecutive
    cdef readonly int remap
    cdef object _keep  # the arrays the memoryviews point into

    def __init__(self, offsets, members, candidates, int64_t n, int64_t k, bint replacement,
                 bint fused, int remap, bint consecutive):
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        members = np.ascontiguousarray(members, dtype=np.int64)
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        self._offsets, self._members, self._candidates = offsets, members, candidates
        largest = _check_plan(self._offsets, self._members, self._candidates, n, k, replacement)
        class_scratch = np.arange(len(candidates), dtype=np.int64)
        shot_scratch = np.empty(largest, dtype=np.int64)
        work = np.empty(2 * n + max(n, k), dtype=np.int64)
        self._class_scratch, self._shot_scratch, self._work = class_scratch, shot_scratch, work
        self._keep = (offsets, members, candidates, class_scratch, shot_scratch, work)
        self.n, self.k, self.replacement, self.fused = n, k, replacement, fused
        self.remap, self.consecutive = remap, consecutive

    def plan_one(self, uint64_t base_seed, int64_t task_index):
        indices_array = np.empty(self.n * self.k, dtype=np.int64)
        labels_array = np.empty(self.n * self.k, dtype=np.int64)
        cdef int64_t[::1] out_indices = indices_array
        cdef int64_t[::1] out_labels = labels_array
        self._row(base_seed, task_index, &out_indices[0], &out_labels[0])
        return indices_array, labels_array

    def plan(self, uint64_t base_seed, task_indices_in):
        task_array = np.ascontiguousarray(task_indices_in, dtype=np.int64)
        cdef const int64_t[::1] tasks = task_array
        cdef Py_ssize_t row, count = tasks.shape[0]
        indices_array = np.empty((count, self.n * self.k), dtype=np.int64)
        labels_array = np.empty((count, self.n * self.k), dtype=np.int64)
        cdef int64_t[:, ::1] out_indices = indices_array
        cdef int64_t[:, ::1] out_labels = labels_array
        for row in range(count):
            self._row(base_seed, tasks[row], &out_indices[row, 0], &out_labels[row, 0])
        return indices_array, labels_array

    cdef inline void _row(self, uint64_t base_seed, int64_t task_index, int64_t* out_indices,
                          int64_t* out_labels) noexcept:
        cdef int64_t n = self.n
        cdef int64_t* work = &self._work[0]
        _plan_row(&self._offsets[0], &self._members[0], &self._candidates[0],
                  self._candidates.shape[0], n, self.k, self.replacement, self.fused, self.remap,
                  self.consecutive, base_seed, task_index, &self._class_scratch[0],
                  &self._shot_scratch[0], work, work + n, work + 2 * n, out_indices, out_labels)

    def __reduce__(self):
        offsets, members, candidates = self._keep[:3]
        return PlanSampler, (offsets, members, candidates, self.n, self.k, self.replacement,
                             self.fused, self.remap, self.consecutive)
