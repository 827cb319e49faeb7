"""The README's test command is what `.ci/run` runs: a user who follows the README runs CI's suite."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the tests (same shell):", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", block, re.S).group(1).strip()
    assert command.startswith("python -m pytest") and "\n" not in command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
