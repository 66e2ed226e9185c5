"""The house has no import circles and no arrows running back up: module-level and function-level
imports both count. Rooms are layered (each may import only the rooms below it), ``train`` uses
``evaluate`` and not the reverse, and only ``momask_ros.ros`` imports rclpy or ROS message packages."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages=("momask_model", "momask_ros")) -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its file (``from . import x`` resolved)."""
    files = {_module_name(p): p for pkg in packages for p in (SRC / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_model_module_imports_itself_through_others():
    graph = import_graph(("momask_model",))
    assert "momask_model.cli.bench" in graph["momask_model.cli.main"]  # the one direction that exists
    assert _cycles(graph) == []


def test_no_ros_module_imports_itself_through_others():
    assert _cycles(import_graph(("momask_ros",))) == []


def test_model_never_imports_ros_package():
    graph = import_graph()
    assert not [(m, t) for m, ts in graph.items() if m.startswith("momask_model") for t in ts
                if t.startswith("momask_ros")]


def test_evaluate_never_imports_train():
    graph = import_graph(("momask_model",))
    evaluate_imports = {t for m, ts in graph.items() if m.startswith("momask_model.evaluate") for t in ts}
    assert not [t for t in evaluate_imports if t.startswith("momask_model.train")]
    train_imports = {t for m, ts in graph.items() if m.startswith("momask_model.train") for t in ts}
    assert any(t.startswith("momask_model.evaluate") for t in train_imports)  # the one direction that exists


def test_the_checker_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


#: Rooms lowest first; a room may import itself and rooms listed before it, never one after it.
LAYERS = {
    "momask_model": ["config", "motion", "text", "nets", "data", "generation", "evaluate", "official", "train", "cli"],
    "momask_ros": ["robot", "retarget", "physics", "tracker", "stream", "tools", "ros"],
}
ROS_PACKAGES = ("rclpy", "rosidl_runtime_py", "launch", "launch_ros", "builtin_interfaces", "rosbag2_py")


def _room(module: str) -> tuple[str, str] | None:
    parts = module.split(".")
    return (parts[0], parts[1]) if len(parts) > 1 else None


def test_rooms_import_only_rooms_below_them():
    graph = import_graph()
    upward = []
    for module, targets in graph.items():
        here = _room(module)
        for target in targets:
            there = _room(target)
            if here is None or there is None or here == there:
                continue
            if here[0] != there[0]:
                continue  # momask_model never imports momask_ros (tested above); the reverse is allowed
            order = LAYERS[here[0]]
            assert here[1] in order and there[1] in order, f"{module} -> {target}: room not in LAYERS"
            if order.index(there[1]) > order.index(here[1]):
                upward.append((module, target))
    assert upward == []


def _external_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _imports_ros(path: Path) -> bool:
    return any(n in ROS_PACKAGES or n.endswith("_msgs") or n.endswith("_interfaces") for n in _external_imports(path))


def test_only_the_ros_room_imports_rclpy_or_messages():
    offenders = [str(p.relative_to(SRC)) for pkg in ("momask_model", "momask_ros") for p in (SRC / pkg).rglob("*.py")
                 if _imports_ros(p) and p.relative_to(SRC).parts[:2] != ("momask_ros", "ros")]
    assert offenders == []


def test_the_ros_rule_sees_a_message_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from sensor_msgs.msg import JointState\n")
    assert _imports_ros(probe)
