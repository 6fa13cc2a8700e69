"""Compile a PyMC model for nutpie with C callbacks that numba caches across processes.

``nutpie.compile_pymc_model`` wraps PyTensor's numba-compiled log density in two C callbacks
(``numba.cfunc``) that numba refuses to cache: they close over per-call objects (an overload and
an intrinsic defined inside the call, and shared-data keys drawn from ``uuid4``). PyTensor does
cache the log density itself under ``base_compiledir/numba``, but every new process still spent
~17 s (of a ~19 s compile, profiled on the world-order model) re-typing and re-lowering the two
wrappers and numba's own error-formatting helpers that they pull in.

:func:`compile_pymc_model` builds the same :class:`nutpie.compile_pymc.CompiledPyMCModel` (same
functions, same user-data record, so ``with_data`` and sampling are nutpie's own) but generates
the wrappers as source text with every constant spelled out and the shared-data keys named by
position, registers that source with PyTensor's numba cache under a key that includes the log
density's own cache key, and compiles them with ``cache=True``. A second process with the same
model and the same compile directory loads the wrappers instead of compiling them.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic
from nutpie import compile_pymc as nutpie_pymc
from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

log = logging.getLogger(__name__)

# Bump when the generated source's meaning changes in a way its text does not show.
_WRAPPER_VERSION = 1

_LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double),
                              types.CPointer(types.double), types.CPointer(types.double),
                              types.voidptr)
_EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                                types.CPointer(types.double), types.voidptr)


@intrinsic
def _void_pointer(typingctx, address):
    """The memory address ``address`` as a ``void*``."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(address), codegen


def _shared_views(keys: list[str], shared_data: dict[str, np.ndarray]) -> tuple[str, str]:
    """The shared arrays as the generated wrappers see them, in ``keys`` order.

    Returns the source lines that view each array out of the user-data record (indented for
    the wrappers' ``try`` block) and the arguments that pass them on to the wrapped function.
    """
    lines = []
    for i, key in enumerate(keys):
        value = shared_data[key]
        shape = ", ".join(f'int(shape_{i}[{d}])' for d in range(value.ndim))
        lines += [
            f'data_{i} = numba.carray(_void_pointer(shared["data"]["{key}"][()]), '
            f'(int(shared["size"]["{key}"][()]),), np.{value.dtype.name})',
            f'shape_{i} = shared["shape"]["{key}"]',
            f'shared_{i} = data_{i}.reshape(({shape}{"," if value.ndim == 1 else ""}))',
        ]
    body = "\n        ".join(lines or ["pass"])
    return body, "".join(f", shared_{i}" for i in range(len(keys)))


def _logp_source(n_dim: int, keys: list[str], shared_data: dict[str, np.ndarray]) -> str:
    body, arguments = _shared_views(keys, shared_data)
    return f"""
def signpost_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        shared = numba.carray(user_data_, (), RECORD)["shared"]
        {body}
        logp_value, grad = inner(x{arguments})
        logp[()] = logp_value
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_value):
            return 4
    except Exception:
        return 1
    return 0
"""


def _expand_source(n_dim: int, n_expanded: int, keys: list[str],
                   shared_data: dict[str, np.ndarray]) -> str:
    body, arguments = _shared_views(keys, shared_data)
    return f"""
def signpost_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        shared = numba.carray(user_data_, (), RECORD)["shared"]
        {body}
        (values,) = inner(x{arguments})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _cfunc(source: str, name: str, signature: Any, inner: Any, record: np.dtype) -> Any:
    """Compile ``source`` as a C callback, cached when PyTensor could cache ``inner``."""
    py_func = getattr(inner, "py_func", None)
    inner_key = CACHED_SRC_FUNCTIONS.get(py_func) if py_func is not None else None
    cache_key = None
    if inner_key is not None:
        cache_key = hashlib.sha256("\n".join(
            (str(_WRAPPER_VERSION), source, str(record.descr), inner_key)).encode()).hexdigest()
    function = compile_numba_function_src(
        # this module's globals: a cached callback's environment is rebuilt from its module's
        source, name, globals() | {"RECORD": record, "inner": inner},
        cache_key=cache_key)
    with warnings.catch_warnings():
        # numba warns rather than fails when something in a graph cannot be cached
        warnings.filterwarnings("ignore", message="Cannot cache compiled function",
                                category=numba.NumbaWarning)
        if cache_key is None:
            return numba.cfunc(signature)(function)
        try:
            return numba.cfunc(signature, cache=True)(function)
        except Exception:  # a damaged cache entry must cost a compile, not the fit
            log.warning("numba cache entry for %s unreadable; compiling it afresh", name,
                        exc_info=True)
            return numba.cfunc(signature)(function)


def compile_pymc_model(model: Any) -> nutpie_pymc.CompiledPyMCModel:
    """``nutpie.compile_pymc_model(model)`` (numba backend, defaults), with cacheable callbacks."""
    from pymc.initial_point import make_initial_point_fn

    pymc_initial_point = nutpie_pymc._wrap_with_lock(make_initial_point_fn(
        model=model, overrides=None, default_strategy="support_point",
        jitter_rvs=set(model.free_RVs), return_transformed=True))
    (n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_fn, shape_info,
     reparameterized_names) = nutpie_pymc._make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=pymc_initial_point)

    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for variable in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if variable in shared_var_keys:
            continue
        key = f"var_{len(shared_var_keys)}"  # by position: the same in every process
        value = np.array(variable.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[key] = value
        shared_var_keys[variable] = key
    user_data = nutpie_pymc.make_user_data(shared_var_keys, shared_data)

    logp_keys = [shared_var_keys[v] for v in logp_fn_pt.get_shared()]
    expand_keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
    logp = _cfunc(_logp_source(n_dim, logp_keys, shared_data), "signpost_logp",
                  _LOGP_SIGNATURE, logp_fn_pt.vm.jit_fn, user_data.dtype)
    expand = _cfunc(_expand_source(n_dim, n_expanded, expand_keys, shared_data),
                    "signpost_expand", _EXPAND_SIGNATURE, expand_fn_pt.vm.jit_fn,
                    user_data.dtype)

    dims, coords = nutpie_pymc._prepare_dims_and_coords(model, shape_info,
                                                        reparameterized_names)
    return nutpie_pymc.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp, compiled_expand_func=expand,
        initial_point_func=initial_point_fn, shared_data=shared_data,
        shared_var_keys=shared_var_keys, user_data=user_data, n_expanded=n_expanded,
        shape_info=shape_info, logp_func=logp_fn_pt, expand_func=expand_fn_pt,
        reparameterized_names=reparameterized_names)
