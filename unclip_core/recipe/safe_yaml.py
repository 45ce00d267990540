"""Parsing YAML a user wrote, with limits, so a hostile or broken file costs one line.

``yaml.safe_load`` alone builds nothing dangerous, but it accepts three things that later
break the rule of one line per mistake: nesting thousands of levels deep (Python's recursion
limit, a 3,000-line traceback), aliases that expand exponentially (a 1.6 KB "billion laughs"
file is a few objects shared a billion times: cheap to load, endless to walk or copy) and a
key given twice (silently last-wins). All three are refused here, with the line.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted; a recipe needs fewer than ten levels."""

MAX_NODES = 100_000
"""Most values a document may hold once its aliases are expanded; the largest shipped
recipe holds a few hundred."""


class YamlLimitError(ValueError):
    """The text is valid YAML but exceeds a limit (or repeats a key); ``str()`` says which."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (``<<`` merges may still
    override keys, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except (TypeError, yaml.YAMLError):
                continue  # the SafeConstructor reports unhashable keys itself
            if key in seen:
                raise YamlLimitError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {_short(key)!r} "
                    f"(first given on line {seen[key] + 1})"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_size(root: yaml.Node) -> None:
    """Refuse a node graph deeper than MAX_DEPTH or larger than MAX_NODES once expanded.

    Iterative and memoised per node, so it costs one visit per distinct node however often
    aliases repeat it (that is what makes the expanded size cheap to know)."""
    expanded: dict[int, int] = {}
    height: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_DEPTH:
            raise YamlLimitError(
                f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
            )
        if isinstance(node, yaml.ScalarNode):
            expanded[id(node)] = height[id(node)] = 1
            continue
        children = [v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if children_done:
            total = 1 + sum(expanded[id(child)] for child in children)
            if total > MAX_NODES:
                raise YamlLimitError(
                    f"line {node.start_mark.line + 1}: more than {MAX_NODES:,} values once its aliases are "
                    "expanded (a recipe holds a few hundred)"
                )
            expanded[id(node)] = total
            height[id(node)] = 1 + max((height[id(child)] for child in children), default=0)
            if height[id(node)] > MAX_DEPTH:  # a shared node first met higher up
                raise YamlLimitError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            continue
        if id(node) in expanded:
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in expanded)


def load_yaml(text: str) -> Any:
    """Parse one YAML document within the limits above.

    Raises ``yaml.YAMLError`` for a syntax error (with its mark) and :class:`YamlLimitError`
    for a document that is too deep, too large once expanded, or repeats a key."""
    loader = _StrictLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def describe_yaml_error(exc: yaml.YAMLError | YamlLimitError) -> str:
    """What follows a file name in a message: `` at line L, column C: invalid YAML: problem``
    for a syntax error, ``: <the limit's own words>`` otherwise."""
    if isinstance(exc, YamlLimitError):
        return f": {exc}"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{where}: invalid YAML: {problem}"
