"""numba's on-disk cache for kernels that call njit functions of other ``kernels`` modules.

numba stamps a cached kernel with its own source file only, so a kernel that inlines or links a
function from another file would keep running stale machine code after that file changes.
:func:`depend_on` registers cache locators for one module whose source stamp also covers the
files it depends on: a change in any of them recompiles the module's kernels.
"""

from __future__ import annotations

import hashlib
import os
from types import ModuleType

from numba.core.caching import CacheImpl, InTreeCacheLocator, UserProvidedCacheLocator


def depend_on(module_file: str, *deps: ModuleType) -> None:
    """Make the cached kernels of ``module_file`` depend on the sources of ``deps`` too.

    Works with numba's cache next to the sources (``__pycache__``) and with ``NUMBA_CACHE_DIR``.
    """
    path = os.path.abspath(module_file)
    digest = hashlib.sha256()
    for dep in deps:
        with open(dep.__file__, "rb") as f:
            digest.update(f.read())
    stamp = digest.hexdigest()

    class _DependencyStamp:
        @classmethod
        def from_function(cls, py_func, py_file):  # noqa: ANN001, ANN206 - numba's signature
            if os.path.abspath(py_file) != path:
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):  # noqa: ANN202 - numba's signature
            return (super().get_source_stamp(), stamp)

    name = os.path.splitext(os.path.basename(path))[0]
    for base in (InTreeCacheLocator, UserProvidedCacheLocator):  # end up user-provided first
        locator = type(f"{name}_{base.__name__}", (_DependencyStamp, base), {})
        CacheImpl._locator_classes.insert(0, locator)
