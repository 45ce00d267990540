"""Fast start: the commands that need no model import no torch (docs/benchmarks.md, "Start-up").

Each check runs in a fresh interpreter, the only place where "was torch imported?" means
anything, and asks ``sys.modules`` rather than a clock, so it holds on any machine."""
from __future__ import annotations

import json
import os
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


def modules_after_loading(recipe: str) -> set[str]:
    """The diffusers packages among those watched that ``load_pipeline(recipe)`` imports. (Not
    transformers: diffusers itself imports it whenever it is installed.)"""
    code = (
        "import sys, json\n"
        "from unclip_core.recipe.assemble import load_pipeline\n"
        f"load_pipeline({recipe!r})\n"
        "watched = ('diffusers.models.autoencoders', 'diffusers.pipelines')\n"
        "print(json.dumps(sorted(m for m in watched if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_default_model_imports_only_the_modules_it_uses():
    """Discovery registers every plugin, but a plugin imports its heavy libraries when one of its
    components is built: the pixel shapes model needs no autoencoder and no pipeline classes,
    and the latent one needs diffusers' autoencoders (so the check is not vacuous)."""
    assert modules_after_loading("shapes") == set()
    assert modules_after_loading("shapes-latent") == {"diffusers.models.autoencoders"}


FINISHING = """
import atexit, sys
{preamble}
class Teardown:
    def __del__(self, _open=open):  # runs when Python unloads __main__ at a normal exit, never after os._exit
        _open({teardown!r}, "w").write("torn down")  # (builtins may be gone by then: hence _open)
teardown = Teardown()
atexit.register(lambda: open({handler!r}, "w").write("ran"))
from unclip_core.cli.main import run
run({argv!r})
"""


def finish(tmp_path, argv: list[str], *, with_torch: bool) -> tuple[subprocess.CompletedProcess, bool, bool]:
    """Run the console script's ``run(argv)`` in a fresh interpreter whose stdout is a pipe:
    (the process, whether the exit handlers ran, whether Python tore the interpreter down)."""
    handler, teardown = tmp_path / "handler", tmp_path / "teardown"
    code = FINISHING.format(preamble="import torch" if with_torch else "", teardown=str(teardown),
                            handler=str(handler), argv=argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return result, handler.exists(), teardown.exists()


def test_the_console_script_skips_teardown_once_torch_is_loaded_yet_flushes_and_runs_exit_handlers(tmp_path):
    result, handlers_ran, torn_down = finish(tmp_path, ["recipe", "ls"], with_torch=True)
    assert result.returncode == 0, result.stderr
    assert "shapes" in result.stdout  # a piped, block-buffered stdout still arrives
    assert handlers_ran and not torn_down


def test_the_console_script_keeps_the_exit_status_of_an_error(tmp_path):
    result, handlers_ran, torn_down = finish(tmp_path, ["recipe", "validate", str(tmp_path / "missing.yaml")],
                                             with_torch=True)
    assert result.returncode == 2 and "unclip: error:" in result.stderr
    assert handlers_ran and not torn_down


def test_without_torch_the_console_script_exits_the_usual_way(tmp_path):
    """Not vacuous: the teardown marker is seen when Python does tear down."""
    result, handlers_ran, torn_down = finish(tmp_path, ["recipe", "ls"], with_torch=False)
    assert result.returncode == 0 and "shapes" in result.stdout
    assert handlers_ran and torn_down
