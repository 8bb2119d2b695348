"""One import direction, read from the source (ast): foundations, then the method, then what reads
the method (capture, rowstats), then studies, then widgets, then the CLI; the toy world beside
the method, neither importing the other. Notebooks and benchmarks never import the CLI module."""
import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anse_lib"

#: layers in import order: a module imports only from its own layer or layers before it
LAYERS = [
    ("foundations", {"provenance", "kernel", "config", "sweeps", "viz", "tiny_pipelines"}),
    ("method and toy world", {"bansa", "probe", "select", "calibrate", "toyworld"}),
    ("readers of the method", {"rowstats", "capture"}),
    ("the study command", {"metrics", "study"}),
    ("studies", {"studies"}),
    ("widgets", {"widgets"}),
    ("command line", {"demo", "__main__"}),
]
METHOD = {"bansa", "probe", "select", "calibrate"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Modules of anse_lib that ``path`` imports, as names relative to the package."""
    mod = module_name(path).split(".") if module_name(path) else []
    package = mod if path.name == "__init__.py" else mod[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "anse_lib":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None or not target:
                out |= {".".join(target + [a.name]) for a in node.names}
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.Import):
            out |= {".".join(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "anse_lib"}
    return {m for m in out if m}


def layer_of(name: str) -> int | None:
    head = name.split(".")[0]
    for i, (_, members) in enumerate(LAYERS):
        if head in members:
            return i
    return None


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py") if module_name(p)}


def test_every_module_has_a_layer():
    missing = sorted(m for m in graph() if layer_of(m) is None)
    assert not missing, f"modules with no layer in LAYERS: {missing}"


def test_imports_go_one_way():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            dep_layer = layer_of(dep)
            if dep_layer is not None and dep_layer > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} ({LAYERS[dep_layer][0]})")
            head, dep_head = mod.split(".")[0], dep.split(".")[0]
            if (head in METHOD and dep_head == "toyworld") or (head == "toyworld" and dep_head in METHOD):
                bad.append(f"{mod} imports {dep}: the method and the toy world stay independent")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    known = set(g)

    def resolve(dep):  # "toyworld.model.X" -> "toyworld.model"
        while dep and dep not in known:
            dep = dep.rpartition(".")[0]
        return dep

    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in {resolve(d) for d in g[node]} - {"", node}:
            if dep.startswith(node + ".") or node.startswith(dep + ".") and dep in ("toyworld", "studies"):
                continue  # a package and its own modules
            assert state.get(dep) != "open", f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in g:
        if node not in state:
            visit(node, [node])


def test_notebooks_and_benchmarks_do_not_import_the_command_line_module():
    bad = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and ("anse_lib.demo" in src or "anse_lib.__main__" in src):
                bad.append(nb.name)
    for py in sorted((ROOT / "benchmarks").glob("*.py")):
        if {"demo", "__main__"} & {m.split(".")[0] for m in imports_of_script(py)}:
            bad.append(py.name)
    assert not bad, f"import from the CLI module (anse_lib.demo / __main__): {sorted(set(bad))}"


def imports_of_script(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "anse_lib":
            out.add(".".join(node.module.split(".")[1:]) or next(iter(a.name for a in node.names)))
    return out


def test_front_door():
    import anse_lib

    for name in ("select_noise", "generate_with_anse", "calibrate_depth", "AnseConfig", "BansaConfig",
                 "AttentionProbe"):
        assert hasattr(anse_lib, name) and name in anse_lib.__all__, name
