"""bench/process_memory.py: running a bench's child process and reading back its figures."""
from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def process_memory(load_bench_script):
    return load_bench_script("process_memory")


def _script(tmp_path, body: str):
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_the_child_gets_its_arguments_and_its_last_json_line_comes_back(process_memory, tmp_path):
    script = _script(tmp_path, """
        import json, sys
        print("a log line")
        print(json.dumps({"first": 1}))
        print(json.dumps({"argv": sys.argv[1:]}))
        print("a trailing log line")
    """)
    figures = process_memory.peak_rss_in_child(script, "ours:bf16", tmp_path / "folder", "--steps", "2,3")
    assert figures == {"argv": ["--child", "ours:bf16", "--child-folder", str(tmp_path / "folder"), "--steps", "2,3"]}


def test_a_failing_child_raises_with_its_last_error_line(process_memory, tmp_path):
    script = _script(tmp_path, """
        import json
        print(json.dumps({"peak_rss_mib": 1.0}))
        raise SystemExit("out of memory in the decoder")
    """)
    with pytest.raises(process_memory.ChildFailed, match="^out of memory in the decoder$"):
        process_memory.peak_rss_in_child(script, "ours", tmp_path)


def test_a_child_that_prints_no_figures_fails(process_memory, tmp_path):
    with pytest.raises(process_memory.ChildFailed, match="no figures"):
        process_memory.peak_rss_in_child(_script(tmp_path, "print('nothing')\n"), "ours", tmp_path)


def test_rss_is_a_positive_number_of_mib(process_memory):
    now = process_memory.rss_mib("VmRSS")
    peak = process_memory.rss_mib()  # read second: the peak is at least what was resident before
    assert 0 < now <= peak < 1 << 20
