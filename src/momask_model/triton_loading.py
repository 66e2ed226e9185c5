"""Load Triton so that it cannot clash with Mesa's LLVM (the OSMesa / EGL software renderers).

Why: Triton's native library carries its own LLVM, and so does Mesa, which MuJoCo loads for
``MUJOCO_GL=osmesa`` through PyOpenGL into the global symbol scope. When Mesa came first, Triton's LLVM
calls bind to Mesa's LLVM and the process segfaults as soon as anything imports Triton (``torch._dynamo``
does, and ``transformers`` imports that). Loading Triton's library with ``RTLD_DEEPBIND`` makes it use its
own symbols whatever was loaded before, so both import orders work.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

#: Renderers that bring Mesa's LLVM into the process.
MESA_BACKENDS = ("osmesa", "egl")


def load_triton_isolated() -> bool:
    """Import Triton's native library with ``RTLD_DEEPBIND`` if Triton is installed and not loaded yet.

    Returns True if this call loaded it. A no-op (False) when Triton is absent or already imported.
    """
    if "triton._C.libtriton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    import torch  # noqa: F401  (torch's own libraries load with the default flags, not deep-bound)

    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        importlib.import_module("triton._C.libtriton")
    except ImportError:  # a Triton without its native part has nothing to clash with
        return False
    finally:
        sys.setdlopenflags(flags)
    return True


def mesa_renderer_selected(environ=os.environ) -> bool:
    """Whether MuJoCo / PyOpenGL are set to render through Mesa (the case that needs the isolation)."""
    return (environ.get("MUJOCO_GL", "").lower() in MESA_BACKENDS
            or environ.get("PYOPENGL_PLATFORM", "").lower() in MESA_BACKENDS)
