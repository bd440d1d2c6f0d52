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


def plan_tasks(const int64_t[::1] offsets, const int64_t[::1] members, candidates_in,
               int64_t n, int64_t k, bint replacement, bint fused, int remap, bint consecutive,
               uint64_t base_seed, task_indices_in):
    candidates_array = np.ascontiguousarray(candidates_in, dtype=np.int64)
    task_array = np.ascontiguousarray(task_indices_in, dtype=np.int64)
    cdef const int64_t[::1] candidates = candidates_array
    cdef const int64_t[::1] tasks = task_array
    cdef int64_t num_candidates = candidates.shape[0], count = tasks.shape[0]
    if not (0 < n <= num_candidates < MAX_POPULATION):
        raise ValueError(f"need 0 < n <= {num_candidates} candidate classes, got n={n}")
    cdef int64_t c, i, size, largest = 1
    for i in range(num_candidates):
        c = candidates[i]
        size = offsets[c + 1] - offsets[c]
        largest = max(largest, size)
        if not replacement and size < k:
            raise ValueError(f"class {c} has {size} members, fewer than k={k}")
    indices_array = np.empty((count, n * k), dtype=np.int64)
    labels_array = np.zeros((count, n * k), dtype=np.int64)
    class_scratch_array = np.empty(num_candidates, dtype=np.int64)
    shot_scratch_array = np.empty(largest, dtype=np.int64)
    order_array = np.empty(n, dtype=np.int64)
    slot_array = np.empty(n, dtype=np.int64)
    cdef int64_t[:, ::1] out_indices = indices_array
    cdef int64_t[:, ::1] out_labels = labels_array
    cdef int64_t[::1] class_scratch = class_scratch_array
    cdef int64_t[::1] shot_scratch = shot_scratch_array
    cdef int64_t[::1] order = order_array
    cdef int64_t[::1] slot = slot_array
    cdef uint64_t state, first, shots_seed, stream
    cdef int64_t row, j, s, start, block
    with nogil:
        for row in range(count):
            state = _mix(_mix(base_seed) ^ <uint64_t>tasks[row])
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
                _partial_shuffle(&stream, order, n, n)
            # slot[j]: where class j's block of shots goes (by label when consecutive)
            for j in range(n):
                slot[j] = order[j] if consecutive else j
            for i in range(num_candidates):
                class_scratch[i] = i
            stream = first
            _partial_shuffle(&stream, class_scratch, num_candidates, n)
            stream = shots_seed
            for j in range(n):
                c = candidates[class_scratch[j]]
                start = offsets[c]
                size = offsets[c + 1] - start
                block = slot[j] * k
                if replacement:
                    for s in range(k):
                        out_indices[row, block + s] = members[start + <int64_t>_below(&stream, <uint64_t>size)]
                else:
                    for s in range(size):
                        shot_scratch[s] = s
                    _partial_shuffle(&stream, shot_scratch, size, k)
                    for s in range(k):
                        out_indices[row, block + s] = members[start + shot_scratch[s]]
                for s in range(k):
                    out_labels[row, block + s] = order[j]
    return indices_array, labels_array
