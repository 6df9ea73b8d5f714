"""README, .env.example and docs stay true to the code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = re.compile(r"env(?:_required|_bool|_int|_list)?\(\s*\"([A-Z][A-Z0-9_]+)\"")


def variables_read_by_settings() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "contactcenter" / "settings").glob("*.py")]:
        names |= set(READERS.findall(path.read_text()))
    return names


def test_env_example_documents_every_variable_the_settings_read():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = variables_read_by_settings() - documented
    assert not missing, f".env.example does not document: {sorted(missing)}"


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert [line.strip() for line in first_block.strip().splitlines() if line.strip()] == ["make run", "make test"]


def test_procfile_runs_web_worker_and_beat():
    procfile = (ROOT / "Procfile").read_text()
    for process in ("web:", "worker:", "beat:"):
        assert re.search(rf"^{process}", procfile, re.M), process
