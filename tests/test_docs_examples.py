"""The documentation pages must work when followed literally.

Each page in ``PAGES`` (docs/writing-plugins.md, docs/recipes.md, docs/latent.md) has its fenced blocks run
or compared, by their info string:

* ```` ```<lang> file=PATH ```` — must be byte-identical to ``PATH`` in the repository, so
  the page can never drift from the real file (the example plugin, a test recipe);
* ```` ```python ```` — executed in one namespace (as a reader pasting them into one session
  would);
* ```` ```yaml patch=RECIPE ```` — its top-level keys replace those of ``RECIPE`` (a path as
  the reader types it), and the result must validate, as an inference or a training recipe.
  When ``RECIPE`` is a file the page had the reader make in their own folder (``unclip
  recipe cp``), the change is also written to it, as the reader editing their copy would;
  the repository's files are only read;
* ```` ```console ```` — each ``$ command`` is run: ``unclip ...`` in-process through
  :func:`unclip_core.cli.main.main` (with any leading ``VAR=value`` set), ``pip install -e
  PATH`` by checking that distribution is installed, ``pytest PATH`` by checking the path
  holds tests the project's own run collects. The lines after a command are its expected
  output: each must appear (whitespace-normalised; ``...`` matches anything, and a line that
  is only ``...`` stands for lines left out). Output starting ``unclip: error:`` means the
  command must fail.

The Python, patch and console blocks of a page run in page order, in one temporary folder in
which ``tests`` points to the repository's tests, so relative paths on the page resolve as
they would in a checkout, files written by one example are there for the next, and nothing
lands in the repository.

Meta-tests then check that each page covers what the code offers (every hook, environment
variable, error class, recipe slot and setting, training option).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import inspect
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = {"writing-plugins": DOCS / "writing-plugins.md", "recipes": DOCS / "recipes.md", "latent": DOCS / "latent.md"}
GUIDES = {"batch": DOCS / "batch.md"}
"""Pages followed the same way, without PAGES' coverage checks (a shown file, Python, a recipe
change each)."""
TOY = ROOT / "tests" / "toy_plugin"


@dataclasses.dataclass
class Block:
    page: Path
    lang: str
    options: dict[str, str]
    text: str
    line: int

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """Every fenced block: language, ``key=value`` options, the text between the fences."""
    blocks, lines, index = [], page.read_text(encoding="utf-8").splitlines(keepends=True), 0
    while index < len(lines):
        opening = re.match(r"^```(\S*)(.*)$", lines[index].rstrip("\n"))
        if not opening:
            index += 1
            continue
        start, body = index + 1, []
        index += 1
        while index < len(lines) and lines[index].rstrip("\n") != "```":
            body.append(lines[index])
            index += 1
        assert index < len(lines), f"{page}:{start}: unclosed code block"
        options = dict(item.split("=", 1) for item in opening.group(2).split() if "=" in item)
        blocks.append(Block(page, opening.group(1), options, "".join(body), start))
        index += 1
    return blocks


BLOCKS = {name: read_blocks(path) for name, path in {**PAGES, **GUIDES}.items()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder where ``tests/...`` resolves to the repository's tests."""
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------------------
# The pages show the real files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", [*PAGES, *GUIDES])
def test_every_file_shown_is_byte_identical_to_the_real_one(page):
    shown = [b for b in BLOCKS[page] if "file" in b.options]
    assert shown or page in GUIDES, "the page shows no file"
    for block in shown:
        path = ROOT / block.options["file"]
        assert path.is_file(), f"{block.where()}: {block.options['file']} does not exist"
        assert block.text.encode("utf-8") == path.read_bytes(), (
            f"{block.where()}: the block differs from {block.options['file']}; paste the file's current text"
        )


def test_the_complete_toy_plugin_is_shown():
    shown = {ROOT / b.options["file"] for b in BLOCKS["writing-plugins"] if "file" in b.options}
    plugin_files = {TOY / "pyproject.toml", *TOY.glob("unclip_toy/*.py"), *TOY.glob("tests/test_*.py")}
    assert plugin_files <= shown, f"not on the page: {sorted(str(p.relative_to(ROOT)) for p in plugin_files - shown)}"


# --------------------------------------------------------------------------------------
# Following a page: Python, recipe edits and commands, in page order
# --------------------------------------------------------------------------------------
def run_python(block: Block, namespace: dict) -> None:
    source = "\n" * block.line + block.text  # tracebacks then point at the page's own lines
    exec(compile(source, str(block.page), "exec"), namespace)  # noqa: S102 - the page's own examples


def apply_patch(block: Block, workdir: Path, registry) -> None:
    """Replace the recipe's top-level keys with the block's, validate; write it back when the
    recipe is the reader's own file (in the working folder, not the repository's)."""
    from unclip_core.errors import RecipeError
    from unclip_core.recipe.validate import validate_recipe
    from unclip_core.training.validate import validate_training

    path = workdir / block.options["patch"]
    assert path.is_file(), f"{block.where()}: {block.options['patch']} does not exist at this point of the page"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(yaml.safe_load(block.text))
    validate = validate_training if "stage" in data else validate_recipe
    try:
        validate(data, registry, base_dir=path.parent)
    except RecipeError as error:
        pytest.fail(f"{block.where()}: the changed {block.options['patch']} does not validate: {error}")
    if path.resolve().is_relative_to(workdir.resolve()):
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@dataclasses.dataclass
class Command:
    text: str
    expected: list[str]
    where: str


def read_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            commands.append(Command(line[2:].strip(), [], f"{block.page.relative_to(ROOT)}:{block.line + offset + 1}"))
        elif line.strip():
            assert commands, f"{block.where()}: output before any command"
            commands[-1].expected.append(line)
    return commands


def _normalise(text: str) -> str:
    return " ".join(text.split())


def check_output(command: Command, output: str) -> None:
    lines = [_normalise(line) for line in output.splitlines()]
    for expected in command.expected:
        if expected.strip() == "...":
            continue
        pattern = ".*".join(re.escape(part) for part in _normalise(expected).split("..."))
        assert any(re.fullmatch(pattern, line) for line in lines), (
            f"{command.where}: `{command.text}` did not print\n  {expected.strip()}\nit printed:\n{output}"
        )


def run_unclip(argv: list[str], env: dict[str, str], monkeypatch, capsys) -> tuple[int, str]:
    import unclip_core.registry as registry_module
    from unclip_core.cli.main import main

    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.setattr(registry_module, "_DEFAULT", None)  # discover again, under this environment
        capsys.readouterr()
        code = main(argv)
        captured = capsys.readouterr()
    return code, captured.out + captured.err


def check_pip_install(command: Command, args: list[str]) -> None:
    assert args[:2] == ["install", "-e"] and len(args) == 3, f"{command.where}: only `pip install -e PATH` is checked"
    project = ROOT / args[2]
    assert (project / "pyproject.toml").is_file(), f"{command.where}: {args[2]} has no pyproject.toml"
    name = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{command.where}: {name} is not installed; run `{command.text}` (the README's setup does)")


def check_pytest(command: Command, args: list[str]) -> None:
    """The project's own pytest run (testpaths: tests) collects these tests, so they are
    run there; here the path only has to hold them."""
    paths = [ROOT / arg for arg in args if not arg.startswith("-")]
    assert paths, f"{command.where}: name the tests to run"
    for path in paths:
        assert path.exists() and list(path.rglob("test_*.py")), f"{command.where}: no tests under {path}"
        assert (ROOT / "tests") in path.resolve().parents, f"{command.where}: {path} is outside tests/"


def run_command(command: Command, monkeypatch, capsys) -> None:
    words = shlex.split(command.text)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    program, args = words[0], words[1:]
    if program == "unclip":
        code, output = run_unclip(args, env, monkeypatch, capsys)
        should_fail = any(line.startswith("unclip: error:") for line in command.expected)
        assert (code != 0) == should_fail, f"{command.where}: `{command.text}` exited {code}\n{output}"
        check_output(command, output)
    elif program == "pip":
        check_pip_install(command, args)
    elif program == "pytest":
        check_pytest(command, args)
    else:
        pytest.fail(f"{command.where}: this test does not know how to check `{command.text}`")


@pytest.mark.parametrize("page", [*PAGES, *GUIDES])
def test_following_the_page_works(page, workdir, registry, monkeypatch, capsys):
    import torch

    blocks = BLOCKS[page]
    runnable = [b for b in blocks if b.lang == "python" and "file" not in b.options]
    commands = [c for b in blocks if b.lang == "console" for c in read_commands(b)]
    assert any("unclip" in shlex.split(c.text) for c in commands), "the page runs no unclip command"
    if page in PAGES:
        assert runnable, "the page has no runnable Python"
        assert any("patch" in b.options for b in blocks), "the page shows no recipe change"

    namespace: dict = {"__name__": f"{page}_page"}
    with torch.random.fork_rng(devices=[]):  # `unclip train` seeds torch's global RNG; leave it as it was
        for block in blocks:
            if block.lang == "python" and "file" not in block.options:
                run_python(block, namespace)
            elif block.lang == "yaml" and "patch" in block.options:
                apply_patch(block, workdir, registry)
            elif block.lang == "console":
                for command in read_commands(block):
                    run_command(command, monkeypatch, capsys)


# --------------------------------------------------------------------------------------
# docs/writing-plugins.md covers what the code offers
# --------------------------------------------------------------------------------------
TEXT = PAGES["writing-plugins"].read_text(encoding="utf-8")


def test_every_hook_is_documented():
    from unclip_core.hookspecs import HOOK_FOR_KIND

    missing = [f"{hook}(register)" for hook in HOOK_FOR_KIND.values() if f"`{hook}(register)`" not in TEXT]
    assert not missing, f"hooks missing from the page's hook table: {missing}"


def test_the_register_callback_signature_is_the_real_one():
    from unclip_core.registry import Registry, _make_register

    register = _make_register(Registry(), "prior", None)  # type: ignore[arg-type]
    parameters, shown, keyword_only = inspect.signature(register).parameters.values(), [], False
    for parameter in parameters:
        if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only:
            shown.append("*")
            keyword_only = True
        default = "" if parameter.default is parameter.empty else f"={parameter.default!r}"
        shown.append(parameter.name + default)
    signature = f"register({', '.join(shown)})"
    assert signature in TEXT, f"the page must give the callback as {signature}"


def test_every_environment_variable_is_documented():
    import unclip_core.registry as registry_module

    variables = set(re.findall(r"UNCLIP_[A-Z_]+", inspect.getsource(registry_module)))
    assert variables, "the registry reads no environment variable?"
    missing = sorted(v for v in variables if f"`{v}`" not in TEXT)
    assert not missing, f"environment variables missing from the page: {missing}"


def test_every_error_class_is_documented():
    import unclip_core.errors as errors

    classes = [c.__name__ for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.UnclipError)]
    missing = [name for name in classes if f"`{name}`" not in TEXT]
    assert not missing, f"error classes missing from the page: {missing}"


def test_every_declared_field_is_documented():
    from unclip_core.interfaces import Declared

    missing = [f.name for f in dataclasses.fields(Declared) if f"`{f.name}`" not in TEXT]
    assert not missing, f"Declared fields missing from the page: {missing}"


def test_every_public_check_is_real():
    import unclip_core.contracts as contracts

    named = set(re.findall(r"`((?:check|make)_[a-z_]+)", TEXT))
    unknown = sorted(name for name in named if name not in contracts.__all__)
    assert not unknown, f"the page names functions unclip_core.contracts does not export: {unknown}"


# --------------------------------------------------------------------------------------
# docs/recipes.md covers what the code offers
# --------------------------------------------------------------------------------------
RECIPES_TEXT = PAGES["recipes"].read_text(encoding="utf-8")


def _undocumented(names: set[str]) -> list[str]:
    return sorted(name for name in names if f"`{name}`" not in RECIPES_TEXT)


def test_every_recipe_slot_and_stage_setting_is_documented():
    from unclip_core.recipe.schema import (
        SLOTS,
        ComponentSlot,
        DecoderStage,
        PriorStage,
        Runtime,
        SamplerSlot,
        UpsamplerStage,
    )

    names = set(SLOTS) | set(ComponentSlot.model_fields) | set(SamplerSlot.model_fields)
    for prefix, stage in (("prior", PriorStage), ("decoder", DecoderStage), ("upsamplers.N", UpsamplerStage)):
        names |= {f"{prefix}.{key}" for key in stage.model_fields if key not in ComponentSlot.model_fields}
    names |= {f"runtime.{key}" for key in Runtime.model_fields}
    missing = _undocumented(names)
    assert not missing, f"recipe slots and settings missing from docs/recipes.md: {missing}"


def test_every_training_setting_is_documented():
    from pydantic import BaseModel

    from unclip_core.recipe.schema import ComponentSlot
    from unclip_core.training.schema import DatasetSlot, TrainRecipe

    names = set(TrainRecipe.model_fields)
    for section, field in TrainRecipe.model_fields.items():
        settings = field.annotation  # optim, ema, train, output; not the component slots
        if isinstance(settings, type) and issubclass(settings, BaseModel) and not issubclass(settings, (ComponentSlot, DatasetSlot)):
            names |= {f"{section}.{key}" for key in settings.model_fields}
    missing = _undocumented(names)
    assert not missing, f"training recipe settings missing from docs/recipes.md: {missing}"


def test_every_recipe_command_and_train_option_is_documented():
    from unclip_core.cli.main import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    top = subcommands(build_parser())
    missing = [f"unclip recipe {name}" for name in subcommands(top["recipe"]) if f"`unclip recipe {name}" not in RECIPES_TEXT]
    options = {o for action in top["train"]._actions for o in action.option_strings if o.startswith("--") and o != "--help"}
    missing += sorted(o for o in options if f"`{o}" not in RECIPES_TEXT)
    assert not missing, f"commands and options missing from docs/recipes.md: {missing}"
