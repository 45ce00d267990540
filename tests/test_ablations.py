"""bench/ablations.py: each row gives the decoder the embedding it names, and the report file
keeps its prose. Runs on the tiny random recipe (the figures themselves are in docs/ablations.md)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from unclip_core.errors import InputError



@pytest.fixture(scope="module")
def ablations(load_bench_script):
    return load_bench_script("ablations")


@pytest.fixture()
def spy(tiny_pipeline, monkeypatch):
    """Records the condition of every decoder call."""
    seen = []
    original = type(tiny_pipeline.decoder).denoiser

    def denoiser(self, cond, scale):
        seen.append(cond)
        return original(self, cond, scale)

    monkeypatch.setattr(type(tiny_pipeline.decoder), "denoiser", denoiser)
    return seen


def test_prior_rows_reproduce_generate(ablations, tiny_pipeline):
    """The prior rows must be ``unclip eval shapes`` exactly: same draws in the same order."""
    prompts = ["a red circle", "a blue square above a green triangle"]
    timing = {"prior_s": 0.0}
    ours = ablations.make_generate(tiny_pipeline, "prior", timing, upsample=True)(prompts, 2, 5)
    reference = tiny_pipeline.generate(prompts, n=2, seed=5)
    assert len(ours) == 4 and timing["prior_s"] > 0
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "source, drops_image, expected",
    [("null", True, "zeros"), ("zero", False, "zeros"), ("text", False, "text")],
)
def test_rows_without_a_prior_give_the_decoder_what_they_name(ablations, tiny_pipeline, spy, source, drops_image, expected):
    prompts = ["a red circle", "a green square"]
    timing = {"prior_s": 0.0}
    images = ablations.make_generate(tiny_pipeline, source, timing, upsample=False)(prompts, 1, 0)
    assert len(images) == 2 and images[0].size == (tiny_pipeline.base_size,) * 2
    assert timing["prior_s"] == 0.0
    cond = spy[-1]
    assert bool(cond.drop_image.all()) is drops_image and bool(cond.drop_image.any()) is drops_image
    assert not cond.drop_text.any()  # the caption is read in every row
    text = tiny_pipeline.encode_text(prompts)
    want = torch.zeros_like(text.embed) if expected == "zeros" else text.embed / text.embed.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(cond.image_embed.float(), want.float())


def test_caption_only_decoding_needs_a_caption(tiny_pipeline):
    with pytest.raises(InputError, match="drop_image needs a caption"):
        tiny_pipeline.decode(torch.zeros(1, 8), None, tiny_pipeline.generator(0), drop_image=True)


def test_report_keeps_the_prose_around_the_table(ablations, tmp_path):
    path = tmp_path / "ablations.md"
    ablations.write_report(path, "| old |", "old details")
    text = path.read_text().replace(ablations.END, ablations.END + "\n\nWhat the paper found ...\n")
    path.write_text("# Ablations\n\nIntro.\n\n" + text.split("# Ablations\n", 1)[1])
    ablations.write_report(path, "| new |", "new details")
    text = path.read_text()
    assert "Intro." in text and "What the paper found" in text
    assert "| new |" in text and "new details" in text and "| old |" not in text
    assert text.count(ablations.BEGIN) == 1 and not (tmp_path / "ablations.md.tmp").exists()


def test_unknown_rows_are_refused_before_any_work(ablations, capsys):
    with pytest.raises(SystemExit):
        ablations.main(["--rows", "diffusion-prior-1,no-such-row", "--write", "-"])
    assert "unknown row(s) no-such-row" in capsys.readouterr().err
