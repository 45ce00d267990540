"""docs/writing-plugins.md must work when followed literally.

The page's fenced blocks are run or compared, by their info string:

* ```` ```<lang> file=PATH ```` — must be byte-identical to ``PATH`` in the repository, so
  the page can never drift from the real example plugin;
* ```` ```python ```` — executed, in page order, in one namespace (as a reader pasting them
  into one session would);
* ```` ```yaml patch=RECIPE ```` — its top-level keys replace those of ``RECIPE``, and the
  result must validate;
* ```` ```console ```` — each ``$ command`` is run: ``unclip ...`` in-process through
  :func:`unclip_core.cli.main.main` (with any leading ``VAR=value`` set), ``pip install -e
  PATH`` by checking that distribution is installed, ``pytest PATH`` by checking the path
  holds tests the project's own run collects. The lines after a command are its expected
  output: each must appear (whitespace-normalised; ``...`` matches anything, and a line that
  is only ``...`` stands for lines left out). Output starting ``unclip: error:`` means the
  command must fail.

Commands run in a temporary folder in which ``tests`` points to the repository's tests, so
relative paths on the page resolve as they would in a checkout and written files land in
the temporary folder.
"""
from __future__ import annotations

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
DOC = ROOT / "docs" / "writing-plugins.md"
TOY = ROOT / "tests" / "toy_plugin"


@dataclasses.dataclass
class Block:
    lang: str
    options: dict[str, str]
    text: str
    line: int

    def where(self) -> str:
        return f"{DOC.relative_to(ROOT)}:{self.line}"


def read_blocks(markdown: str) -> list[Block]:
    """Every fenced block: language, ``key=value`` options, the text between the fences."""
    blocks, lines, index = [], markdown.splitlines(keepends=True), 0
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
        assert index < len(lines), f"{DOC}:{start}: unclosed code block"
        options = dict(item.split("=", 1) for item in opening.group(2).split() if "=" in item)
        blocks.append(Block(opening.group(1), options, "".join(body), start))
        index += 1
    return blocks


BLOCKS = read_blocks(DOC.read_text(encoding="utf-8"))


def blocks_of(lang: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang == lang]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder where ``tests/...`` resolves to the repository's tests."""
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------------------
# The page shows the real plugin
# --------------------------------------------------------------------------------------
def test_every_file_shown_is_byte_identical_to_the_real_one():
    shown = [b for b in BLOCKS if "file" in b.options]
    assert shown, "the page shows no file"
    for block in shown:
        path = ROOT / block.options["file"]
        assert path.is_file(), f"{block.where()}: {block.options['file']} does not exist"
        assert block.text.encode("utf-8") == path.read_bytes(), (
            f"{block.where()}: the block differs from {block.options['file']}; paste the file's current text"
        )


def test_the_complete_toy_plugin_is_shown():
    shown = {ROOT / b.options["file"] for b in BLOCKS if "file" in b.options}
    plugin_files = {TOY / "pyproject.toml", *TOY.glob("unclip_toy/*.py"), *TOY.glob("tests/test_*.py")}
    assert plugin_files <= shown, f"not on the page: {sorted(str(p.relative_to(ROOT)) for p in plugin_files - shown)}"


# --------------------------------------------------------------------------------------
# Python and YAML blocks
# --------------------------------------------------------------------------------------
def test_python_blocks_run_in_order(workdir):
    runnable = [b for b in blocks_of("python") if "file" not in b.options]
    assert runnable, "the page has no runnable Python"
    namespace: dict = {"__name__": "writing_plugins_page"}
    for block in runnable:
        source = "\n" * block.line + block.text  # tracebacks then point at the page's own lines
        exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own examples


def test_recipe_patches_validate(registry):
    from unclip_core.recipe.validate import validate_recipe

    patches = [b for b in blocks_of("yaml") if "patch" in b.options]
    assert patches, "the page shows no recipe change"
    for block in patches:
        recipe_path = ROOT / block.options["patch"]
        data = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
        data.update(yaml.safe_load(block.text))
        validate_recipe(data, registry, base_dir=recipe_path.parent)


# --------------------------------------------------------------------------------------
# Console blocks
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Command:
    text: str
    expected: list[str]
    where: str


def read_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            commands.append(Command(line[2:].strip(), [], f"{DOC.relative_to(ROOT)}:{block.line + offset + 1}"))
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


def test_console_commands_do_what_the_page_shows(workdir, monkeypatch, capsys):
    commands = [c for b in blocks_of("console") for c in read_commands(b)]
    assert any("unclip" in shlex.split(c.text) for c in commands), "the page runs no unclip command"
    for command in commands:
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


# --------------------------------------------------------------------------------------
# The page covers what the code offers
# --------------------------------------------------------------------------------------
TEXT = DOC.read_text(encoding="utf-8")


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
    import unclip_core.testing as testing

    named = set(re.findall(r"`((?:check|make)_[a-z_]+)", TEXT))
    unknown = sorted(name for name in named if name not in testing.__all__)
    assert not unknown, f"the page names functions unclip_core.testing does not export: {unknown}"
