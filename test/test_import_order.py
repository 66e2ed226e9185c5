"""MuJoCo (with Mesa's OSMesa) and Triton both carry LLVM: importing the package after MuJoCo, or
MuJoCo after the package, must not crash the process (it used to exit 139 with no message)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# What a user script does, then what our text encoders do on the first command (transformers
# imports torch._dynamo, which imports Triton).
ORDERS = {
    "mujoco first": "import mujoco; import momask_ros; import torch._dynamo",
    "package first": "import momask_ros; import mujoco; import torch._dynamo",
    "model after mujoco": "import mujoco; import momask_model; import torch._dynamo",
}


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_both_import_orders_survive_osmesa(order):
    pytest.importorskip("mujoco")
    env = dict(os.environ, MUJOCO_GL="osmesa", PYTHONPATH=str(SRC))
    proc = subprocess.run([sys.executable, "-c", ORDERS[order] + "; print('alive')"], env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and "alive" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


def test_the_isolation_is_a_no_op_once_triton_is_loaded():
    from momask_model.triton_loading import load_triton_isolated, mesa_renderer_selected

    assert mesa_renderer_selected({"MUJOCO_GL": "osmesa"}) and not mesa_renderer_selected({"MUJOCO_GL": "glfw"})
    load_triton_isolated()
    assert load_triton_isolated() is False
