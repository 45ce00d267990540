"""bench/vs_diffusers_cli.py: the options the *_vs_diffusers benches share, and what a child gets."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cli(load_bench_script):
    return load_bench_script("vs_diffusers_cli")


@pytest.fixture
def parser(cli):
    return cli.comparison_parser("a bench", sizes="small,medium", sizes_help="any of small, medium",
                                 steps="25,20", steps_help="prior,decoder steps", repeats=3)


def test_defaults_and_hidden_child_options(cli, parser):
    args = cli.parse(parser, [])
    assert (args.sizes, args.steps, args.repeats, args.threads, args.no_rss, args.child, args.child_folder) == (
        "small,medium", "25,20", 3, None, False, None, None)
    help_text = parser.format_help()
    assert "--no-rss" in help_text and "--child" not in help_text.replace("--no-rss", "")


def test_the_child_gets_the_steps_and_threads_its_parent_timed(cli, parser):
    threads = torch.get_num_threads()
    try:
        args = cli.parse(parser, ["--steps", "2,3", "--threads", "1", "--child", "ours", "--child-folder", "/x"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert cli.child_options(args) == ["--steps", "2,3", "--threads", "1"]
    assert cli.child_options(cli.parse(parser, ["--steps", "4,5"])) == ["--steps", "4,5"]


def test_steps_and_the_report_heading(cli, parser):
    args = cli.parse(parser, ["--steps", "7,3", "--repeats", "4"])
    assert cli.steps_of(args) == (7, 3)
    heading = cli.report_heading(args, 2)
    assert heading.startswith("machine: ")
    assert heading.endswith(f"{torch.get_num_threads()} threads; steps (7, 3), 2 prompts, median of 4")
