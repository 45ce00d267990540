"""Shared fixtures. Tests never reach a model hub: everything runs offline on tiny components."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# runtime.precision: auto's probe caches its figures; tests keep theirs out of the user's cache
os.environ["UNCLIP_CACHE_DIR"] = tempfile.mkdtemp(prefix="unclip-test-cache-")

import pytest  # noqa: E402

TESTS = Path(__file__).parent
TINY_RECIPE = TESTS / "recipes" / "tiny.yaml"


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for every test. The models under test are tiny: thread start-up
    costs more than it saves, and on a shared 2-core machine threads of concurrent runs
    spin-wait for each other (an encoder training test: 0.8 s on one thread, 25 s on two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def registry():
    from unclip_core.registry import discover

    return discover()


@pytest.fixture(scope="session")
def tiny_recipe_path() -> Path:
    return TINY_RECIPE


@pytest.fixture(scope="session")
def tiny_recipe_data() -> dict:
    import yaml

    return yaml.safe_load(TINY_RECIPE.read_text())


@pytest.fixture(scope="session")
def tiny_pipeline(registry):
    from unclip_core.recipe.assemble import build_pipeline
    from unclip_core.recipe.files import load_recipe

    return build_pipeline(load_recipe(TINY_RECIPE, registry=registry), registry)


@pytest.fixture(scope="session")
def load_bench_script():
    """Imports a script under ``bench/`` as a module. It is registered in ``sys.modules`` before it
    runs because dataclasses with string annotations look their module up there."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parent.parent / "bench"
    if str(bench) not in sys.path:  # bench scripts import their siblings, as `python bench/x.py` lets them
        sys.path.insert(0, str(bench))

    def load(name: str):
        module_name = f"bench_{name}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, bench / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module

    return load
