"""The package reads in one direction: data -> evaluation -> predictors -> training -> lab and CLI."""

import ast
from pathlib import Path

import pricer

PACKAGE = Path(pricer.__file__).parent
# Each module's layer; a module may import (at the top or inside a function) only from its own layer or below.
LAYERS = [
    {"errors", "distributed", "env", "files", "config", "patches", "patches.fence", "patches.torch",
     "patches.trl", "patches.transformers", "patches.bitsandbytes"},  # foundations: no pricer logic above
    {"prompts", "catalog", "sources", "listings", "formats", "items", "dataprep", "job"},  # data: names resolved
    # once, rows read and checked
    {"evaluator"},  # evaluation: self-contained (also shipped as util.py)
    {"neural", "baselines", "human", "frontier", "models", "predict"},  # predictors
    {"memory", "speed", "runs", "train"},  # training
    {"", "__main__", "charts", "quantization", "leaderboard", "report", "lab", "rehearsal", "session", "progress",
     "edge", "checks",
     "cli"},  # the edge
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "standin" in path.parts:
            continue  # Colab's module, stood in: not pricer's
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix("__init__").rstrip(".")
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """pricer modules a file imports anywhere in it, lazy imports included."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pricer":
            base = node.module.removeprefix("pricer").lstrip(".")
            out.add(base)
            out |= {f"{base}.{a.name}".lstrip(".") for a in node.names if f"{base}.{a.name}".lstrip(".") in known}
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("pricer").lstrip(".") for a in node.names if a.name.split(".")[0] == "pricer"}
    return out


def test_every_module_has_a_layer():
    assert set(modules()) == set(LAYER), set(modules()) ^ set(LAYER)


def test_imports_go_down_the_layers_and_never_round_in_a_circle():
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    upward = [f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]})" for a, bs in graph.items() for b in bs
              if b != "" and LAYER[b] > LAYER[a]]
    assert not upward, upward
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(trail + [node])}"
        state[node] = "open"
        for nxt in graph[node] - {""}:  # `from pricer import x` names the module x, counted above
            visit(nxt, trail + [node])
        state[node] = "done"

    for name in graph:
        visit(name, [])
