"""Plugin discovery through real entry points: the installed toy plugin, and broken ones.

Broken plugins are made as throw-away distributions (a ``*.dist-info`` folder with an
``entry_points.txt``) on ``sys.path``, so they go through exactly the loader an installed
third-party package does.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from unclip_core.cli.main import main
from unclip_core.errors import PluginError
from unclip_core.registry import discover

BUILT_INS = {
    ("encoder", "open-clip"),
    ("prior", "diffusion-prior"),
    ("decoder", "unclip-decoder"),
    ("upsampler", "unet-upsampler"),
    ("sampler", "ddpm"),
    ("sampler", "ddim"),
}


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> None:
    """A minimal installed distribution: module file + dist-info with an ``unclip`` entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[unclip]\n{entry_name or dist} = {module}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fake_unclip_")]:
        del sys.modules[name]


def test_built_ins_come_through_entry_points(registry):
    found = {(s.kind, s.name) for s in registry.all_components()}
    assert BUILT_INS <= found
    for kind, name in BUILT_INS:
        spec = registry.get(kind, name)
        assert spec.provider.distribution == "unclip"
        assert spec.summary, f"{kind} {name} has no summary"


def test_toy_plugin_is_installed_and_listed(registry, capsys):
    spec = registry.get("prior", "text-as-image")
    assert spec.provider.distribution == "unclip-toy-plugin"
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    rows = {(c["kind"], c["name"]): c for c in listing["components"]}
    assert rows[("prior", "text-as-image")]["distribution"] == "unclip-toy-plugin"
    assert rows[("prior", "text-as-image")]["version"] == "0.1.0"


def test_toy_plugin_assembles_from_a_recipe(registry, tiny_recipe_data, tmp_path):
    from unclip_core.recipe.assemble import build_pipeline
    from unclip_core.recipe.validate import validate_recipe

    data = dict(tiny_recipe_data)
    data["prior"] = {"type": "text-as-image", "config": {"embed_dim": 16}}
    pipeline = build_pipeline(validate_recipe(data, registry, base_dir=tmp_path), registry)
    images = pipeline.generate("a red circle", n=1, seed=0)
    assert images[0].size == (32, 32)
    text = pipeline.encode_text(["a red circle"])
    z = pipeline.prior.sample(text, sampler=None, generator=pipeline.generator(0))
    assert z.shape == (1, 16) and (z - text.embed).abs().max() < 1e-6


def test_broken_import_is_reported_and_others_still_work(plugin_dir, capsys, monkeypatch):
    make_distribution(plugin_dir, "broken-plugin", "fake_unclip_broken", "raise ImportError('needs libfoo')\n")
    registry = discover()
    failures = {f.plugin: f for f in registry.failures}
    assert "broken-plugin" in failures
    assert "needs libfoo" in failures["broken-plugin"].error
    assert failures["broken-plugin"].distribution == "broken-plugin"
    assert BUILT_INS <= {(s.kind, s.name) for s in registry.all_components()}
    # the CLI lists it too
    import unclip_core.registry as reg

    monkeypatch.setattr(reg, "_DEFAULT", None)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "broken-plugin" in out and "needs libfoo" in out and "ddim" in out
    monkeypatch.setattr(reg, "_DEFAULT", None)


DUPLICATE = """
import torch

from unclip_core import ComponentConfig, Sampler, hookimpl


class WrongConfig(ComponentConfig):
    steps: int = 1


class WrongSampler(Sampler[WrongConfig]):
    \"\"\"A 'ddim' that draws nothing like DDIM: were it used, every image would be black.\"\"\"

    def sample(self, denoiser, shape, *, generator, x_T=None, callback=None):
        return -torch.ones(shape, device=denoiser.device)


@hookimpl
def register_samplers(register):
    register("ddim", WrongSampler, WrongConfig, summary="a clash")
"""

DEFAULT_QUICK = ["--seed", "1", "-q", "prior.sampler.config.steps=3", "decoder.sampler.config.steps=3",
                 "upsamplers.0.sampler.config.steps=3"]


def test_a_plugin_registering_a_built_in_name_leaves_the_built_in(plugin_dir, tmp_path, capsys, monkeypatch):
    """A third-party ``ddim`` must not break the shipped recipes: the built-in keeps the name,
    theirs answers to ``plugin:ddim``, every command says so in one warning line, and
    ``unclip plugins`` shows the clash. The default recipe draws the same image as without it."""
    import numpy as np
    from PIL import Image

    import unclip_core.registry as reg

    monkeypatch.setattr(reg, "_DEFAULT", None)
    assert main(["generate", "a red circle", "-o", str(tmp_path / "before.png"), *DEFAULT_QUICK]) == 0
    capsys.readouterr()

    make_distribution(plugin_dir, "clashing-plugin", "fake_unclip_dup", DUPLICATE)
    registry = discover()
    assert registry.get("sampler", "ddim").provider.distribution == "unclip"
    assert registry.get("sampler", "clashing-plugin:ddim").factory.__name__ == "WrongSampler"
    assert not registry.failures
    assert [spec.provider.distribution for spec in registry.shadowed()] == ["clashing-plugin"]

    monkeypatch.setattr(reg, "_DEFAULT", None)
    assert main(["generate", "a red circle", "-o", str(tmp_path / "after.png"), *DEFAULT_QUICK]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "sampler 'ddim' of clashing-plugin 1.0" in warned[0], warned
    assert "'clashing-plugin:ddim'" in warned[0]
    before, after = (np.asarray(Image.open(tmp_path / f"{name}.png")) for name in ("before", "after"))
    assert before.std() > 10, "the default recipe drew a flat image"
    assert np.array_equal(before, after), "installing a plugin that registers 'ddim' changed the default image"

    monkeypatch.setattr(reg, "_DEFAULT", None)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "clashing-plugin:ddim" in out and "Name clashes" in out
    monkeypatch.setattr(reg, "_DEFAULT", None)


def test_two_third_party_plugins_with_one_name_need_qualified_names(plugin_dir):
    source = DUPLICATE.replace('register("ddim"', 'register("wrong"')
    make_distribution(plugin_dir, "wrong-a", "fake_unclip_wrong_a", source)
    make_distribution(plugin_dir, "wrong-b", "fake_unclip_wrong_b", source)
    registry = discover()
    with pytest.raises(PluginError) as info:
        registry.get("sampler", "wrong")
    message = str(info.value)
    assert "wrong-a 1.0" in message and "wrong-b 1.0" in message and "'wrong-a:wrong'" in message
    assert "'wrong-b:wrong'" in message
    assert registry.get("sampler", "wrong-b:wrong").provider.distribution == "wrong-b"
    assert any("already registered" in f.error and f.distribution in ("wrong-a", "wrong-b") for f in registry.failures)
    with pytest.raises(PluginError, match=r"plugin 'wrong-c' registers no sampler 'wrong'"):
        registry.get("sampler", "wrong-c:wrong")


def test_misspelled_hook_is_rejected(plugin_dir):
    source = """
    from unclip_core import hookimpl

    @hookimpl
    def register_sampler(register):  # missing "s"
        pass
    """
    make_distribution(plugin_dir, "typo-plugin", "fake_unclip_typo", source)
    registry = discover()
    failure = next(f for f in registry.failures if f.plugin == "typo-plugin")
    assert "unknown hook" in failure.error and "register_sampler" in failure.error
    assert "typo-plugin" not in registry.plugins


def test_hook_that_raises_and_bad_config_model_are_reported(plugin_dir):
    source = """
    from pydantic import BaseModel
    from unclip_core import hookimpl

    class Loose(BaseModel):
        pass

    @hookimpl
    def register_decoders(register):
        register("loose", object, Loose)

    @hookimpl
    def register_encoders(register):
        raise RuntimeError("boom")
    """
    make_distribution(plugin_dir, "bad-plugin", "fake_unclip_bad", source)
    registry = discover()
    errors = " | ".join(f.error for f in registry.failures if f.plugin == "bad-plugin")
    assert "ComponentConfig" in errors and "boom" in errors
    assert BUILT_INS <= {(s.kind, s.name) for s in registry.all_components()}


def test_allowlist_and_blocklist(monkeypatch):
    monkeypatch.setenv("UNCLIP_DISABLE_PLUGINS", "unclip-toy-plugin")
    assert "text-as-image" not in discover().names("prior")
    monkeypatch.delenv("UNCLIP_DISABLE_PLUGINS")
    from_samplers = {(s.kind, s.name) for s in discover().all_components() if s.provider.plugin == "samplers"}
    assert {("sampler", "ddpm"), ("sampler", "ddim")} <= from_samplers
    monkeypatch.setenv("UNCLIP_PLUGINS", "samplers")
    only = discover()
    assert {(s.kind, s.name) for s in only.all_components()} == from_samplers


def test_unknown_component_suggests_a_close_name(registry):
    with pytest.raises(PluginError, match=r"did you mean 'ddim'"):
        registry.get("sampler", "dddim")


def test_trace_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("UNCLIP_TRACE_PLUGINS", "1")
    discover()
    err = capsys.readouterr().err
    assert "call samplers.register_samplers" in err and "register sampler 'ddim'" in err


IMPORTER = """
from pathlib import Path

from unclip_core import hookimpl


class Echo:
    help = "writes a one-line recipe naming its argument"

    def add_arguments(self, parser):
        parser.add_argument("source")
        parser.add_argument("--out", required=True)

    def run(self, args):
        recipe = Path(args.out) / "echo.yaml"
        recipe.parent.mkdir(parents=True, exist_ok=True)
        recipe.write_text(f"# Run: unclip generate x -r {recipe}\\n# from {args.source}\\n")
        return recipe


@hookimpl
def register_importers(register):
    register("echo", Echo())
"""


def test_a_plugin_registers_an_import_format(plugin_dir, tmp_path, capsys, monkeypatch):
    """``unclip import FORMAT`` runs whatever format a plugin registers, with its own arguments;
    the core names no format (the built-in karlo one comes through the same hook)."""
    import unclip_core.registry as reg

    make_distribution(plugin_dir, "echo-importer", "fake_unclip_echo", IMPORTER)
    monkeypatch.setattr(reg, "_DEFAULT", None)
    registry = reg.default_registry()
    assert registry.importer("karlo").provider.distribution == "unclip"
    assert registry.importer("echo").provider.distribution == "echo-importer"
    assert main(["import", "echo", "some-source", "--out", str(tmp_path / "out")]) == 0
    assert "run it with: unclip generate x -r" in capsys.readouterr().out
    assert (tmp_path / "out" / "echo.yaml").read_text().splitlines()[1] == "# from some-source"
    assert main(["import", "ehco", "x"]) == 2
    assert "'ehco' is not a registered import format (did you mean 'echo'?)" in capsys.readouterr().err
    assert main(["plugins"]) == 0
    assert any(line.split()[:2] == ["importer", "echo"] for line in capsys.readouterr().out.splitlines())
    monkeypatch.setattr(reg, "_DEFAULT", None)


def test_an_importer_without_run_is_a_plugin_failure(plugin_dir):
    make_distribution(plugin_dir, "bad-importer", "fake_unclip_badimp", """
from unclip_core import hookimpl

@hookimpl
def register_importers(register):
    register("nothing", object())
""")
    registry = discover()
    assert "nothing" not in registry.importers
    assert any("must have add_arguments(parser) and run(args)" in f.error for f in registry.failures)
