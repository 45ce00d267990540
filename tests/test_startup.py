"""Fast start: the commands that need no model import no torch (docs/benchmarks.md, "Start-up").

Each check runs in a fresh interpreter, the only place where "was torch imported?" means
anything, and asks ``sys.modules`` rather than a clock, so it holds on any machine."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "open_clip", "transformers", "numpy", "PIL")


def modules_loaded_by(argv: list[str]) -> set[str]:
    """The heavy modules ``unclip ARGV`` imports, run the way the console script runs it."""
    code = (
        "import sys, json\n"
        "from unclip_core.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["recipe", "ls"], ["generate", "--help"]],
                         ids=["version", "help", "recipe-ls", "generate-help"])
def test_commands_that_need_no_model_import_no_torch(argv):
    assert modules_loaded_by(argv) == set()


def test_the_check_sees_an_import_of_torch():
    """Not vacuous: a command that builds models is seen importing torch."""
    assert "torch" in modules_loaded_by(["doctor", "--json"])


def test_the_package_names_still_resolve_lazily():
    import unclip_core

    assert unclip_core.__version__
    from unclip_core import Decoder, RecipeError, load_pipeline  # noqa: F401  (loaded on first use)

    assert "load_pipeline" in dir(unclip_core)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        unclip_core.nothing_here  # noqa: B018
