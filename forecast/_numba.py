"""Numba code generation that gives the same bits on every thread (imported first by `forecast`).

LLVM's loop and SLP vectorizers, applied to PyTensor's compiled log density, made its last bits
depend on the memory addresses of the temporaries it allocates: the same point gave gradients
differing by 1e-16 to 1e-13 when evaluated on another thread, whose allocator arena hands out
other addresses. nutpie runs each chain on whichever thread of its pool is free, so a seeded
chain's arithmetic depended on scheduling, and NUTS amplified a last-bit difference into a
different chain: a seeded fit repeated in one process was not always bit for bit the same
(docs/decisions/009, which has the measurements). With both vectorizers off the compiled density
returned identical bits in 144,000 concurrent evaluations, at the same speed (18.2 against
18.4 µs per log density and gradient of the convergence model).

PyTensor also compiles its graphs with numba's fastmath flags (reassociation, contraction),
which let LLVM order the arithmetic differently depending on what it inlined: a process that
compiled the convergence model itself and one that loaded it from PyTensor's cache returned
gradients differing in the last bit at some points (1 of the 29 evaluations of one L-BFGS run
from the mode search), and NUTS made different chains of the same seed (pilot MCSE 0.0123
against 0.0047). With fastmath off both agree bit for bit, at the same speed (25.4 against
25.3 µs per log density and gradient).

Numba reads these switches whenever it builds a pass pipeline, so setting them before anything
is compiled covers every function this process compiles. Code compiled earlier with the
vectorizers on sits in the caches under the same keys (the switches are not part of a key), so
every cache this process writes lives in a directory named for them under PyTensor's
``base_compiledir``: PyTensor's graphs in ``numba-ieee``, and Signpost's own kernels
(``cache=True`` in `forecast.ops`, `forecast.paths`, …) in ``numba-ieee-kernels`` instead of
``__pycache__`` beside the source, where a checkout kept kernels compiled under other switches
(seen: a checkout's cached kernels gave other chains of a seeded fit than a fresh clone's),
suffixed by a digest of the kernels' sources (a kernel calling an edited one in another file
would otherwise be loaded stale).
``NUMBA_CACHE_DIR``, when set, still decides where the kernels go.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba.core.config

# before anything imports PyTensor's numba backend: numba builds its module-level pass
# pipeline once, when its code generator is first used
numba.core.config.LOOP_VECTORIZE = False
numba.core.config.SLP_VECTORIZE = False

import pytensor  # noqa: E402
from pytensor.link.numba import cache as _pytensor_numba_cache  # noqa: E402

pytensor.config.numba__fastmath = False
CACHE_DIRECTORY = "numba-ieee"
if _pytensor_numba_cache.NUMBA_CACHE_PATH.name != CACHE_DIRECTORY:
    _pytensor_numba_cache.NUMBA_CACHE_PATH = (_pytensor_numba_cache.NUMBA_CACHE_PATH.parent
                                              / CACHE_DIRECTORY)
    _pytensor_numba_cache.NUMBA_CACHE_PATH.mkdir(parents=True, exist_ok=True)


def _kernel_sources_digest() -> str:
    """A digest of the files whose code the kernels compile: `forecast` and the kinds.

    Numba invalidates a cached kernel when its own file changes, not when a kernel it calls
    changes in another file (`forecast.paths` compiles each kind's ``path_marginal``): naming
    the cache directory by every such file's bytes keeps no kernel past an edit of its callees.
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("*.py"), *(root.parent / "indicators" / "kinds").glob("*.py")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# before `forecast`'s kernels are decorated: numba picks a function's cache locator then
if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.core.config.CACHE_DIR = str(Path(pytensor.config.base_compiledir)
                                      / f"{CACHE_DIRECTORY}-kernels-{_kernel_sources_digest()}")
