"""`decoder.candidates: N`: each image is the best of N decoded draws by CLIP similarity to its
caption. Checked on the shipped shapes model against the draws made again and ranked by the
public `rerank` operation (the PIL path), not by the code under test."""
from __future__ import annotations

import pytest
import torch

from unclip_core.images import tensor_to_pil
from unclip_core.recipe.assemble import load_pipeline

PROMPTS = ["a red circle to the left of a blue square", "a green triangle above a yellow circle"]


@pytest.fixture(scope="module")
def best_of_3():
    return load_pipeline("shapes", ["decoder.candidates=3", "upsamplers=[]"])


def test_each_kept_image_is_the_draw_rerank_puts_first(best_of_3):
    pipeline = best_of_3
    kept = pipeline.generate_tensors(PROMPTS, seed=5)
    # The same draws again: the chain up to the decoder, which draws 3 per caption in one batch.
    generator = pipeline.generator(5)
    text = pipeline.encode_text(PROMPTS)
    image_embed = pipeline.sample_prior(text, generator)
    drawn = pipeline.decode(image_embed.repeat_interleave(3, 0), text.repeat_interleave(3), generator)
    for index, prompt in enumerate(PROMPTS):
        candidates = drawn[3 * index : 3 * index + 3]
        ranked = pipeline.rerank(tensor_to_pil(candidates), prompt)
        (first, best_score), (_, second_score) = ranked[0], ranked[1]
        matches = [j for j in range(3) if torch.equal(kept[index], candidates[j])]
        assert matches, "the kept image is not one of the draws"
        if best_score - second_score > 1e-3:  # PIL rounding may swap a near-tie
            assert matches == [first]


def test_one_candidate_draws_exactly_what_decode_draws():
    pipeline = load_pipeline("shapes", ["upsamplers=[]"])
    assert pipeline.settings.decoder_candidates == 1
    kept = pipeline.generate_tensors(PROMPTS, seed=5)
    generator = pipeline.generator(5)
    text = pipeline.encode_text(PROMPTS)
    expected = pipeline.decode(pipeline.sample_prior(text, generator), text, generator)
    assert torch.equal(kept, expected)


def test_candidates_out_of_range_are_refused_naming_the_setting():
    from unclip_core.errors import RecipeError

    with pytest.raises(RecipeError, match="decoder.candidates"):
        load_pipeline("shapes", ["decoder.candidates=0"])
