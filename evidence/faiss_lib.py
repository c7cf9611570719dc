"""FAISS, the field's library for exact search over binary codes by Hamming distance (its brute-force
``IndexBinaryFlat``), for ORB descriptors (evidence.features) and the duplicate index's 64-bit hashes
(evidence.index). Imported where first used (``load_faiss``): API processes import both modules but never
search, and are spared its ~17 MB."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _imported():
    # lazy: ~17 MB and ~0.2 s that only the evidence worker's searches need (the module docstring)
    import faiss

    return faiss


def load_faiss():
    """The faiss module, with one OpenMP thread for the calling thread: an evidence worker process is one of several
    per core (as OpenCV has one thread, evidence.features); libgomp's setting is per thread, so it is set on every
    call (a few ns), whatever thread searches."""
    module = _imported()
    module.omp_set_num_threads(1)
    return module
