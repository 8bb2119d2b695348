"""Project hygiene: the conda environment and pyproject agree; notebooks carry no errors."""
import json
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py_deps = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_deps = [d for d in pip_section if not d.startswith("-e")]
    assert sorted({_name(d) for d in py_deps}) == sorted({_name(d) for d in conda_deps})
    # the pins that matter are the same
    pins = lambda deps: {_name(d): d.replace(" ", "") for d in deps if "==" in d}
    for name, pin in pins(py_deps).items():
        conda_pin = pins(conda_deps).get(name)
        assert conda_pin == pin, f"{name}: pyproject pins {pin}, environment.yml {conda_pin}"
    assert "torch==2.13.0" in conda_deps


def test_committed_notebooks_ran_cleanly():
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(counts), f"{nb_path.name}: has unexecuted code cells; run `make notebooks`"
        assert counts == sorted(counts), f"{nb_path.name}: cells were not run top to bottom"
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                assert out.get("output_type") != "error", f"{nb_path.name}: a committed cell output is an error"
