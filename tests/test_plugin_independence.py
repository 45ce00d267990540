"""No plugin imports another plugin's modules: code that two plugins need lives in unclip_core or
in a library package under plugins/ that registers nothing (``diffusers_folders``, ``shapes``),
so disabling or replacing one plugin never breaks another. Checked on the import statements."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
PLUGINS = ROOT / "plugins"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PREFIX = "unclip_plugins."


def _plugin_packages() -> set[str]:
    """The packages registered as ``unclip`` entry points, by folder name."""
    targets = PYPROJECT["project"]["entry-points"]["unclip"].values()
    return {target[len(PREFIX):].split(".")[0] for target in targets if target.startswith(PREFIX)}


def _imported(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source``, the text of ``module``
    (dotted, e.g. ``unclip_plugins.karlo.importer``); relative imports are resolved."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:  # from .. import x: x may be a module
                found += [(node.lineno, ".".join([*base, alias.name])) for alias in node.names]
    return found


def _foreign_plugin_imports(source: str, module: str, plugins: set[str]) -> list[str]:
    own = module[len(PREFIX):].split(".")[0]
    problems = []
    for line, name in _imported(source, module):
        if not name.startswith(PREFIX):
            continue
        other = name[len(PREFIX):].split(".")[0]
        if other != own and other in plugins:
            problems.append(f"{module} line {line} imports {name} (plugin {other!r})")
    return problems


def test_no_plugin_package_imports_another_plugin():
    plugins = _plugin_packages()
    problems = []
    for path in sorted(PLUGINS.glob("*/**/*.py")):
        relative = path.relative_to(PLUGINS).with_suffix("")
        module = ".".join(["unclip_plugins", *relative.parts])
        problems += _foreign_plugin_imports(path.read_text(encoding="utf-8"), module, plugins)
    assert not problems, "move shared code to plugins/diffusers_folders/ or unclip_core:\n" + "\n".join(problems)


def test_the_check_sees_absolute_relative_and_lazy_imports():
    plugins = {"karlo", "samplers", "kandinsky22"}
    module = "unclip_plugins.kandinsky22.settings"
    source = (
        "from unclip_plugins.karlo.settings import _config\n"
        "from ..karlo import importer\n"
        "def f():\n    import unclip_plugins.samplers._common\n"
        "from unclip_plugins.diffusers_folders.settings import read_config\n"
        "from .decoder import Kandinsky22Decoder\n"
        "from unclip_plugins.shapes import check\n"
    )
    found = _foreign_plugin_imports(source, module, plugins)
    assert [p.split(" imports ")[1] for p in found] == [
        "unclip_plugins.karlo.settings (plugin 'karlo')",
        "unclip_plugins.karlo (plugin 'karlo')",
        "unclip_plugins.samplers._common (plugin 'samplers')",
    ]


def test_shared_library_packages_register_nothing():
    plugins = _plugin_packages()
    assert {"karlo", "kandinsky22", "stable_unclip", "samplers"} <= plugins
    assert "diffusers_folders" not in plugins and "shapes" not in plugins
    assert "unclip_plugins.diffusers_folders" in PYPROJECT["tool"]["setuptools"]["packages"]
