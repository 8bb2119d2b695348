"""The workbook's shape: numbering, the opening and closing cells, references that resolve."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: the story, one notebook per number (issue 15); those that exist must carry these numbers
STORY = {"00": "toy world", "01": "attention rows", "02": "BALD to BANSA", "03": "mask shortcut",
         "04": "seeing attention uncertainty", "05": "does the score predict quality",
         "06": "what the first step can know", "07": "layers, steps and cost", "08": "real diffusers models",
         "09": "end to end"}
#: "notebook 03", "notebooks 00-03", "notebooks 00 and 09", "03_bernoulli_mask_shortcut.ipynb"
_NUMBER_REF = re.compile(r"\bnotebooks?\s+((?:\d\d)(?:\s*(?:-|–|,|and|or)\s*\d\d)*)", re.I)
_FILE_REF = re.compile(r"\b(\d\d_[A-Za-z0-9_]+\.ipynb)")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _text(cell) -> str:
    return "".join(cell["source"])


def referenced_notebooks(text: str) -> tuple[set[str], set[str]]:
    """Notebook numbers and file names that ``text`` names."""
    numbers = set()
    for match in _NUMBER_REF.finditer(text):
        numbers.update(re.findall(r"\d\d", match.group(1)))
        for a, b in re.findall(r"(\d\d)\s*[-–]\s*(\d\d)", match.group(1)):   # a range names all between
            numbers.update(f"{n:02d}" for n in range(int(a), int(b) + 1))
    return numbers, set(_FILE_REF.findall(text))


def test_reference_finder():
    numbers, files = referenced_notebooks("see notebook 03, notebooks 00-02, then the file 09_end_to_end_anse.ipynb")
    assert numbers == {"03", "00", "01", "02"} and files == {"09_end_to_end_anse.ipynb"}


def test_numbering_follows_the_story_and_ends_with_end_to_end():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {numbers}"
    assert set(numbers) <= set(STORY), f"numbers outside the story: {sorted(set(numbers) - set(STORY))}"
    assert NOTEBOOKS[-1].name.startswith("09_"), "the end-to-end run is the last notebook"
    for p in NOTEBOOKS:
        title = _text(_cells(p)[0]).splitlines()[0]
        assert title.startswith(f"# {p.name[:2]} · "), f"{p.name}: the first line is '# NN · title', got {title!r}"


def test_every_notebook_opens_with_what_it_teaches_needs_and_costs():
    for p in NOTEBOOKS:
        first = _text(_cells(p)[0])
        for part in ("**You will learn**", "**Needs**", "**Runs in**"):
            assert part in first, f"{p.name}: the opening cell has no {part}"
        assert len(re.findall(r"^- ", first.split("**You will learn**")[1].split("**Needs**")[0], re.M)) == 3, \
            f"{p.name}: 'You will learn' has three bullets"


def test_every_notebook_closes_with_summary_and_exercises():
    for p in NOTEBOOKS:
        text = "\n".join(_text(c) for c in _cells(p) if c["cell_type"] == "markdown")
        assert "## Summary" in text, f"{p.name}: no '## Summary'"
        tail = text.split("## Try it")
        assert len(tail) == 2, f"{p.name}: no '## Try it' (or more than one)"
        exercises = re.findall(r"^\d\. ", tail[1], re.M)
        assert 2 <= len(exercises) <= 3, f"{p.name}: 'Try it' has {len(exercises)} numbered exercises, want 2-3"
        assert text.index("## Summary") < text.index("## Try it"), f"{p.name}: Summary comes before Try it"


def test_references_to_notebooks_resolve():
    existing_numbers = {p.name[:2] for p in NOTEBOOKS}
    existing_files = {p.name for p in NOTEBOOKS}
    sources = {p.name: "\n".join(_text(c) for c in _cells(p)) for p in NOTEBOOKS}
    sources["README.md"] = (ROOT / "README.md").read_text()
    for py in sorted((ROOT / "anse_lib").rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        sources[str(py.relative_to(ROOT))] = py.read_text()
    for name, text in sources.items():
        numbers, files = referenced_notebooks(text)
        missing = sorted(numbers - existing_numbers)
        assert not missing, f"{name} names notebook(s) {missing}, which do not exist"
        assert files <= existing_files, f"{name} names {sorted(files - existing_files)}, which do not exist"
