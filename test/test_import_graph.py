"""The house has no import circles: module-level and function-level imports both count, and the
``train`` and ``evaluate`` subpackages import in one direction only (training uses evaluation)."""
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
    assert "momask_model.bench" in graph["momask_model.cli"]  # the one direction that exists
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
