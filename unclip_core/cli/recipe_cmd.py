"""``unclip recipe ls|show|validate|cp`` (after torchtune's recipe commands)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

from unclip_core.errors import InputError
from unclip_core.output_paths import check_writable


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipe", help="list, show, validate and copy recipes")
    rsub = p.add_subparsers(dest="recipe_command", metavar="ACTION")
    rsub.required = True

    ls = rsub.add_parser("ls", help="list the recipes shipped with unclip")
    ls.set_defaults(handler=run_ls)

    for name, helptext, handler in (
        ("validate", "check a recipe completely (all problems at once)", run_validate),
        ("show", "print a recipe with overrides applied and every default filled in", run_show),
    ):
        q = rsub.add_parser(name, help=helptext)
        q.add_argument("recipe", help="a recipe file or the name of a shipped recipe")
        q.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. decoder.sampler.config.steps=25")
        q.set_defaults(handler=handler)

    cp = rsub.add_parser("cp", help="copy a shipped recipe to edit it (weights paths stay valid)")
    cp.add_argument("recipe", help="name of a shipped recipe (see `unclip recipe ls`)")
    cp.add_argument("destination", help="file to write")
    cp.add_argument("--force", action="store_true", help="overwrite an existing file")
    cp.set_defaults(handler=run_cp)


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def run_ls(args: argparse.Namespace) -> int:
    from unclip_core.recipe.shipped import shipped_recipes

    recipes = shipped_recipes()
    width = max((len(n) for n in recipes), default=4)
    for name, path in recipes.items():
        print(f"{name:<{width}}  {_first_comment(path)}")
    return 0


def _is_training(name_or_path: str) -> bool:
    from unclip_core.recipe.files import find_recipe, is_training_recipe, read_yaml

    return is_training_recipe(read_yaml(find_recipe(name_or_path)))


def _load_any(name_or_path: str, overrides: list[str]):
    """A generation or training recipe, fully validated (whichever kind it is)."""
    from unclip_core.recipe.files import load_recipe
    from unclip_core.training.validate import load_training

    loader = load_training if _is_training(name_or_path) else load_recipe
    return loader(name_or_path, overrides)


def run_validate(args: argparse.Namespace) -> int:
    resolved = _load_any(args.recipe, args.overrides)
    print(f"ok: {resolved.source} (digest {resolved.digest})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from unclip_core.recipe.files import load_recipe

    if _is_training(args.recipe):
        return _show_training(args)
    resolved = load_recipe(args.recipe, args.overrides)
    data = resolved.recipe.model_dump(mode="json")
    stages = [("encoder", resolved.encoder), ("prior", resolved.prior), ("decoder", resolved.decoder)]
    for key, component in stages:
        data[key]["config"] = component.config.model_dump(mode="json")
    for key, sampler in (("prior", resolved.prior_sampler), ("decoder", resolved.decoder_sampler)):
        if sampler is not None:
            data[key]["sampler"]["config"] = sampler.config.model_dump(mode="json")
    for index, (upsampler, sampler) in enumerate(resolved.upsamplers):
        data["upsamplers"][index]["config"] = upsampler.config.model_dump(mode="json")
        data["upsamplers"][index]["sampler"]["config"] = sampler.config.model_dump(mode="json")
    print(f"# {resolved.source} (digest {resolved.digest})")
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0


def _show_training(args: argparse.Namespace) -> int:
    from unclip_core.training.validate import load_training

    resolved = load_training(args.recipe, args.overrides)
    data = resolved.recipe.model_dump(mode="json")
    data["model"]["config"] = resolved.model.config.model_dump(mode="json")
    data["dataset"]["config"] = resolved.dataset.config.model_dump(mode="json")
    if resolved.encoder is not None:
        data["encoder"]["config"] = resolved.encoder.config.model_dump(mode="json")
    print(f"# {resolved.source} (digest {resolved.digest})")
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    return 0


def run_cp(args: argparse.Namespace) -> int:
    from unclip_core.recipe.files import find_recipe, is_slot_file, read_yaml

    source = find_recipe(args.recipe)
    destination = check_writable(args.destination, "recipe copy", folder=Path(args.destination).is_dir())
    if destination.is_dir():
        destination = destination / source.name
    if destination.exists() and not args.force:
        raise InputError(f"{destination} already exists; pass --force to overwrite it")
    # Validated before anything is copied: a binary file, a billion-laughs or a broken recipe
    # is refused in one line like `recipe validate` refuses it. A slot file (one stage, not a
    # recipe) is read within the same limits.
    data = read_yaml(source) or {}
    if not is_slot_file(source):
        _load_any(str(source), [])
    text = source.read_text(encoding="utf-8")
    rewritten = False
    for relative in _weights_paths(data):
        shipped = (source.parent / relative).resolve()
        if not (destination.parent / relative).exists() and shipped.exists():
            text = re.sub(
                rf"(weights:\s*)['\"]?{re.escape(relative)}['\"]?", lambda m: f"{m.group(1)}{shipped}", text
            )
            rewritten = True
    for key, relative in _slot_files(data):  # a slot given as a file (`prior: shapes-prior-ar.yaml`)
        shipped = (source.parent / relative).resolve()
        if not (destination.parent / relative).exists() and shipped.exists():
            text = re.sub(rf"^({key}:\s*)['\"]?{re.escape(relative)}['\"]?", lambda m: f"{m.group(1)}{shipped}", text, flags=re.M)
            rewritten = True
    if rewritten:
        text = _note_the_copy(text, source)
    from unclip_core.atomic import atomic_write

    atomic_write(destination, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"copied {source} to {destination}")
    return 0


def _note_the_copy(text: str, source: Path) -> str:
    """The copy's comments made true for its new place: the files they call "next to this
    file" are beside the original, and a first line says so (after a slot file's mark)."""
    from unclip_core.recipe.shipped import SLOT_FILE_MARK

    folder = str(source.parent)
    lines = [
        line.replace("next to this file", f"in {folder}") if line.lstrip().startswith("#") else line
        for line in text.splitlines(keepends=True)
    ]
    note = f"# Copied from {source}: relative weights and slot-file paths now point into {folder}.\n"
    first = 1 if lines and lines[0].startswith(SLOT_FILE_MARK) else 0  # a slot file keeps its mark first
    return "".join(lines[:first]) + note + "".join(lines[first:])


def _slot_files(data: object) -> list[tuple[str, str]]:
    """``(slot, relative file)`` for each top-level slot given as a slot file."""
    if not isinstance(data, dict):
        return []
    return [
        (key, value) for key, value in data.items()
        if isinstance(value, str) and value.endswith((".yaml", ".yml")) and not Path(value).is_absolute()
    ]


def _weights_paths(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "weights" and isinstance(value, str) and not Path(value).is_absolute():
                found.append(value)
            else:
                found.extend(_weights_paths(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_weights_paths(item))
    return found
