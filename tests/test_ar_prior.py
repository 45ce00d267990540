"""The autoregressive prior (``ar-prior``): its PCA + quantisation codebook against numpy,
its causal transformer's masking, guidance, the z_i·z_t token, recipe validation, weights,
and a training smoke run through the real loop (fitting before step 0, exact resume)."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unclip_core import PriorCondition, UnclipError
from unclip_core.errors import InputError, RecipeError
from unclip_core.recipe.validate import validate_recipe
from unclip_core.contracts import make_text_encoding
from unclip_core.weights import load_weights, save_weights
from unclip_plugins.ar_prior import ARPrior, ARPriorConfig, PCACodebook
from unclip_plugins.ar_prior.codebook import assign, quantiles

D, L, W = 16, 16, 32
TINY = dict(
    embed_dim=D, text_width=W, context_length=L, pca_dims=6, num_buckets=32, dot_buckets=8,
    num_layers=2, num_attention_heads=2, attention_head_dim=8, min_explained_variance=None, fit_items=64,
)


def tiny_prior(**changes) -> ARPrior:
    torch.manual_seed(0)
    return ARPrior(ARPriorConfig(**{**TINY, **changes})).eval()


def clustered_embeddings(n: int, dim: int = 64, rank: int = 12, seed: int = 0) -> np.ndarray:
    """Unit vectors like CLIP's: a shared mean direction plus a low-rank spread with a decaying
    spectrum and a little isotropic noise (float64, ``[n, dim]``)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    scales = 0.5 * 0.8 ** np.arange(rank)
    x = 2.0 * basis[:, 0] + (rng.normal(size=(n, rank)) * scales) @ basis[:, 1 : rank + 1].T
    x += 0.004 * rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pairs(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings and text embeddings that are noisy copies of them (so z_i·z_t varies)."""
    images = clustered_embeddings(n, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    texts = images + rng.uniform(0.05, 0.6, size=(n, 1)) * rng.normal(size=images.shape) / math.sqrt(dim)
    return images, texts / np.linalg.norm(texts, axis=1, keepdims=True)


# ------------------------------------------------------------------ the codebook against numpy
def test_quantile_edges_and_bucket_assignment_by_hand():
    values = torch.arange(8, dtype=torch.float64)[:, None]  # 0 … 7
    edges = quantiles(values, 4)
    # numpy's linear method: positions q·(n−1) = 1.75, 3.5, 5.25 between order statistics
    assert edges.tolist() == [[1.75, 3.5, 5.25]]
    codes = assign(torch.tensor([[-9.0], [1.75], [1.8], [3.49], [3.5], [5.3], [99.0]], dtype=torch.float64), edges)
    # a value equal to an edge goes to the bucket above it (the count of edges at or below it)
    assert codes[:, 0].tolist() == [0, 1, 1, 1, 2, 3, 3]


def test_quantiles_and_assignment_match_numpy():
    rng = np.random.default_rng(3)
    values = rng.standard_t(3, size=(1001, 5)) * rng.uniform(0.1, 2, size=5)
    edges = quantiles(torch.from_numpy(values), 64).numpy()
    expected = np.quantile(values, np.arange(1, 64) / 64, axis=0).T
    np.testing.assert_allclose(edges, expected, rtol=1e-12, atol=1e-12)
    codes = assign(torch.from_numpy(values), torch.from_numpy(edges)).numpy()
    for k in range(5):
        np.testing.assert_array_equal(codes[:, k], np.searchsorted(expected[k], values[:, k], side="right"))
    # equal-count buckets: 1001 values in 64 buckets, 15 or 16 each
    counts = np.stack([np.bincount(codes[:, k], minlength=64) for k in range(5)])
    assert counts.min() >= 15 and counts.max() <= 16


def test_pca_basis_and_explained_variance_match_numpy_svd():
    images, texts = pairs(4000, 64, seed=1)
    book = PCACodebook(64, 10, 128, 16)
    figures = book.fit(torch.from_numpy(images), torch.from_numpy(texts), target_variance=0.99)
    centred = images - images.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    ratio = np.cumsum(singular**2) / np.sum(singular**2)
    assert figures["pca_explained_variance"] == pytest.approx(ratio[9], rel=1e-9)
    assert float(book.explained_variance) == pytest.approx(ratio[9], rel=1e-6)
    assert figures["pca_dims_needed"] == int(np.argmax(ratio >= 0.99)) + 1
    np.testing.assert_allclose(book.mean.double().numpy(), images.mean(axis=0), atol=1e-6)
    # the same directions as numpy's (up to sign), in the same order
    overlap = np.abs(book.components.double().numpy() @ vt[:10].T)
    np.testing.assert_allclose(overlap, np.eye(10), atol=1e-4)


def test_bucket_centres_are_the_mean_of_their_training_values():
    images, texts = pairs(3000, 64, seed=2)
    book = PCACodebook(64, 4, 16, 8)
    book.fit(torch.from_numpy(images), torch.from_numpy(texts))
    coords = (images - images.mean(axis=0)) @ book.components.double().numpy().T
    for k in range(4):
        edges = np.quantile(coords[:, k], np.arange(1, 16) / 16)
        codes = np.searchsorted(edges, coords[:, k], side="right")
        means = [coords[codes == b, k].mean() for b in range(16)]
        np.testing.assert_allclose(book.centres[k].double().numpy(), means, rtol=1e-5, atol=1e-6)
    dots = (images * texts).sum(axis=1)
    dot_edges = np.quantile(dots, np.arange(1, 8) / 8)
    np.testing.assert_allclose(book.dot_edges.double().numpy(), dot_edges, rtol=1e-6)
    np.testing.assert_allclose(book.dot_probs.double().numpy(), np.full(8, 1 / 8), atol=1e-3)


def test_pca_and_quantisation_round_trip_keeps_held_out_cosine():
    """The issue's check: codes → centres → inverse PCA → unit norm keeps cosine ≥ 0.99 with
    the unquantised originals on embeddings the fit never saw (1024 buckets, as the paper)."""
    images, texts = pairs(24000, 64, seed=4)
    train, held_out = slice(0, 20000), slice(20000, None)
    book = PCACodebook(64, 16, 1024, 64)
    figures = book.fit(torch.from_numpy(images[train]), torch.from_numpy(texts[train]))
    assert figures["pca_explained_variance"] > 0.99
    original = torch.from_numpy(images[held_out])
    decoded = book.decode(book.encode(original)).double()
    cosine = (decoded * original).sum(-1)  # both unit norm
    assert float(decoded.norm(dim=-1).sub(1).abs().max()) < 1e-5
    assert float(cosine.min()) >= 0.99, f"worst held-out cosine {float(cosine.min()):.5f}"
    # quantisation alone costs little next to PCA truncation: compare with the unquantised projection
    projected = F.normalize(book.project(original).double() @ book.components.double() + book.mean.double(), dim=-1)
    assert float((projected * original).sum(-1).mean() - cosine.mean()) < 1e-3


def test_fit_fails_when_the_kept_dims_explain_too_little():
    images, texts = pairs(2000, D, seed=5)
    prior = tiny_prior(pca_dims=2, min_explained_variance=0.99, num_buckets=16)
    ratio = np.cumsum(np.linalg.svd(images - images.mean(0), compute_uv=False) ** 2)
    needed = int(np.argmax(ratio / ratio[-1] >= 0.99)) + 1
    with pytest.raises(UnclipError, match=rf"pca_dims 2 keeps .* below min_explained_variance 0.99; set pca_dims to at least {needed}$"):
        prior.fit_from_embeddings(torch.from_numpy(images).float(), torch.from_numpy(texts).float())
    with pytest.raises(InputError, match=r"needs at least 32 training embeddings, got 10"):
        tiny_prior().fit_from_embeddings(torch.randn(10, D), torch.randn(10, D))
    with pytest.raises(InputError, match=r"needs \[N, 16\] text embeddings, got \[64, 8\]"):
        tiny_prior().fit_from_embeddings(torch.randn(64, D), torch.randn(64, 8))


def test_dot_token_is_drawn_from_the_top_half_of_its_training_distribution():
    images, texts = pairs(8000, D, seed=6)
    book = PCACodebook(D, 4, 16, 8)
    book.fit(torch.from_numpy(images), torch.from_numpy(texts))
    dots = (images * texts).sum(axis=1)
    median = np.median(dots)
    tokens = book.sample_dot_tokens(4000, 0.5, torch.Generator().manual_seed(0))
    # every drawn token's bucket lies wholly above the training median (numpy's)
    lower_edges = book.dot_edges.double().numpy()[tokens.numpy() - 1]
    assert (tokens >= 1).all() and (lower_edges >= median - 1e-6).all()
    # and the top half is covered as the training data covers it: 4 equal buckets, 1000 draws each
    counts = np.bincount(tokens.numpy(), minlength=8)
    assert counts[:4].sum() == 0 and np.all(np.abs(counts[4:] - 1000) < 150), counts
    everything = book.sample_dot_tokens(4000, 0.0, torch.Generator().manual_seed(0))
    assert set(everything.tolist()) == set(range(8))
    again = book.sample_dot_tokens(4000, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(tokens, again)


# ------------------------------------------------------------------ the transformer
def _condition(batch: int, seed: int, drop: bool = False) -> PriorCondition:
    text = make_text_encoding(batch, D, L, W, torch.Generator().manual_seed(seed))
    cond = PriorCondition.from_text(text)
    if drop:
        cond.drop_text = torch.ones_like(cond.drop_text)
    return cond


def _perturbed(prior: ARPrior) -> ARPrior:
    """Learned nulls away from zero, so the conditional and unconditional branches differ."""
    with torch.no_grad():
        prior.null_text_embed.normal_(0, 1, generator=torch.Generator().manual_seed(1))
        prior.null_text_tokens.normal_(0, 1, generator=torch.Generator().manual_seed(2))
    return prior


def test_changing_a_later_code_never_changes_earlier_logits():
    prior = tiny_prior()
    cond = _condition(3, seed=0)
    dots = torch.tensor([1, 5, 7])
    codes = torch.randint(0, 32, (3, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        base = prior(codes, cond, dots)
        assert base.shape == (3, 6, 32)
        for j in range(5):  # the last code is never an input
            changed = codes.clone()
            changed[:, j] = (changed[:, j] + 7) % 32
            logits = prior(changed, cond, dots)
            # logits at position i predict code i from codes < i: only positions after j may move
            assert torch.equal(logits[:, : j + 1], base[:, : j + 1]), f"code {j} leaked into earlier logits"
            assert not torch.allclose(logits[:, j + 1], base[:, j + 1]), f"code {j} is not read at all"


def test_padded_caption_tokens_are_not_read():
    prior = tiny_prior()
    cond = _condition(2, seed=1)
    cond.text_mask[:, 5:] = False
    codes = torch.randint(0, 32, (2, 6), generator=torch.Generator().manual_seed(1))
    dots = torch.tensor([2, 3])
    with torch.no_grad():
        base = prior(codes, cond, dots)
        cond.text_tokens[:, 5:] += 10.0
        assert torch.equal(prior(codes, cond, dots), base)
        cond.text_tokens[:, :5] += 1.0
        assert not torch.allclose(prior(codes, cond, dots), base)


def test_guidance_is_uncond_plus_scale_times_difference():
    prior = _perturbed(tiny_prior())
    cond = _condition(2, seed=2)
    dots = torch.tensor([6, 7])
    codes = torch.randint(0, 32, (2, 3), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # each branch on its own: the caption and the dot token, or the learned nulls
        conditional = prior.logits(prior.prefix(cond, dots), codes)[:, -1]
        dropped = _condition(2, seed=99, drop=True)  # another caption: dropped, it must not matter
        unconditional = prior.logits(prior.prefix(dropped, torch.tensor([0, 3])), codes)[:, -1]
        expected = unconditional + 3.0 * (conditional - unconditional)
        both = torch.cat([dots, torch.full_like(dots, prior.null_dot_token)])
        from unclip_core.interfaces import concat_conditions

        prefix = prior.prefix(concat_conditions(cond, cond.unconditional()), both)
        torch.testing.assert_close(prior.next_logits(prefix, codes, 3.0), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prior.next_logits(prior.prefix(cond, dots), codes, 1.0), conditional)
    assert not torch.allclose(conditional, unconditional)


def test_temperature_and_top_k():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9, -1.0]]).repeat(2000, 1)
    greedy = tiny_prior(num_buckets=5, top_k=1)
    assert (greedy._draw(logits, torch.Generator().manual_seed(0)) == 1).all()
    top2 = tiny_prior(num_buckets=5, top_k=2)
    drawn = top2._draw(logits, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {1, 3}
    # softmax over the two kept logits: p(1) = 1 / (1 + e^-0.1)
    assert float((drawn == 1).float().mean()) == pytest.approx(1 / (1 + math.exp(-0.1)), abs=0.04)
    cold = tiny_prior(num_buckets=5, temperature=0.002)  # gap 0.1 → 50: p(3) ≈ e^-50
    assert (cold._draw(logits, torch.Generator().manual_seed(0)) == 1).all()


def test_sample_gives_unit_norm_decoded_embeddings_and_refuses_a_sampler(registry):
    prior = tiny_prior()
    text = make_text_encoding(3, D, L, W, torch.Generator().manual_seed(3))
    steps = []
    z = prior.sample(text, sampler=None, generator=torch.Generator().manual_seed(0), guidance_scale=2.0,
                     candidates=2, callback=steps.append)
    assert z.shape == (3, D)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    assert [s.index for s in steps] == list(range(6)) and steps[-1].x.shape == (6, 6)
    # decode the 6 sampled code rows by hand (centres → inverse PCA → unit norm), keep the best of 2
    codes, book = steps[-1].x.numpy(), prior.codebook
    centres, components, mean = (t.double().numpy() for t in (book.centres, book.components, book.mean))
    decoded = np.stack([centres[np.arange(6), row] @ components + mean for row in codes])
    decoded /= np.linalg.norm(decoded, axis=1, keepdims=True)
    scores = (decoded.reshape(3, 2, D) * text.embed.double().numpy()[:, None]).sum(-1)
    expected = decoded.reshape(3, 2, D)[np.arange(3), scores.argmax(1)]
    np.testing.assert_allclose(z.double().numpy(), expected, atol=1e-5)
    ddim = registry.get("sampler", "ddim")
    with pytest.raises(UnclipError, match="samples its codes itself and takes no sampler"):
        prior.sample(text, sampler=ddim.build(ddim.config_model()), generator=torch.Generator())


# ------------------------------------------------------------------ recipes
def ar_slot(tiny: dict) -> dict:
    config = {k: v for k, v in TINY.items() if k != "fit_items"}
    config.update(embed_dim=tiny["prior"]["config"]["embed_dim"], text_width=tiny["prior"]["config"]["text_width"])
    return {"type": "ar-prior", "config": config, "guidance_scale": 2.0, "candidates": 2}


def test_recipe_validation_refuses_a_sampler_for_the_ar_prior(registry, tiny_recipe_data):
    data = copy.deepcopy(tiny_recipe_data)
    data["prior"] = {**ar_slot(data), "sampler": {"type": "ddim", "config": {"steps": 3}}}
    with pytest.raises(RecipeError) as info:
        validate_recipe(data, registry)
    assert info.value.problems == [("prior.sampler", "prior 'ar-prior' samples by itself; remove prior.sampler")]
    data["prior"] = ar_slot(data)
    validate_recipe(data, registry)
    data["prior"]["config"]["pca_dims"] = 99
    with pytest.raises(RecipeError, match=r"prior.config: .*pca_dims 99 is more than embed_dim 16"):
        validate_recipe(data, registry)


def test_tiny_pipeline_generates_with_the_ar_prior(registry, tiny_recipe_data):
    from unclip_core.recipe.assemble import build_pipeline

    data = copy.deepcopy(tiny_recipe_data)
    data["prior"] = ar_slot(data)
    data["upsamplers"] = []
    pipeline = build_pipeline(validate_recipe(data, registry), registry)
    images = pipeline.generate_tensors("a red circle", seed=3)
    assert images.shape == (1, 3, 16, 16)
    assert torch.equal(images, pipeline.generate_tensors("a red circle", seed=3))


# ------------------------------------------------------------------ weights
def test_fitted_buffers_travel_in_the_weights_file(tmp_path):
    images, texts = pairs(2000, D, seed=7)
    prior = tiny_prior()
    prior.fit_from_embeddings(torch.from_numpy(images).float(), torch.from_numpy(texts).float())
    path = save_weights(prior, tmp_path / "ar.safetensors")
    fresh = ARPrior(ARPriorConfig(**TINY)).eval()
    assert not torch.equal(fresh.codebook.components, prior.codebook.components)
    load_weights(fresh, path)
    for name, buffer in prior.codebook.named_buffers():
        assert torch.equal(buffer, getattr(fresh.codebook, name)), name
    text = make_text_encoding(2, D, L, W, torch.Generator().manual_seed(8))
    a = prior.sample(text, sampler=None, generator=torch.Generator().manual_seed(0), guidance_scale=2.0)
    b = fresh.sample(text, sampler=None, generator=torch.Generator().manual_seed(0), guidance_scale=2.0)
    assert torch.equal(a, b)
    # an fp16 export (as the shipped weights) still decodes within rounding of fp32
    half = ARPrior(ARPriorConfig(**TINY)).eval()
    half.load_state_dict({k: v.half().float() for k, v in prior.state_dict().items()})
    codes = prior.codebook.encode(torch.from_numpy(images[:200]).float())
    cosine = (half.codebook.decode(codes) * prior.codebook.decode(codes)).sum(-1)
    assert float(cosine.min()) > 0.9999


# ------------------------------------------------------------------ training through the loop
def train_recipe(tiny: dict, steps: int = 30) -> dict:
    config = {**TINY, "embed_dim": 16, "text_width": 32, "num_buckets": 16, "pca_dims": 4, "fit_items": 48}
    return {
        "name": "tiny-ar-prior",
        "stage": "prior",
        "model": {"type": "ar-prior", "config": config},
        "encoder": copy.deepcopy(tiny["encoder"]),
        "dataset": {"type": "shapes", "config": {"size": 32, "length": 48, "seed": 0}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "decay": "constant"},
        "ema": {"decay": 0.9},
        "train": {"steps": steps, "batch_size": 16, "seed": 0},
        "output": {"checkpoint_every": 100, "log_every": 1},
    }


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_fits_the_codebook_first_and_the_loss_goes_down(registry, tiny_recipe_data, tmp_path):
    from unclip_core.training.loop import train
    from unclip_core.training.validate import validate_training

    data = train_recipe(tiny_recipe_data)
    data["output"]["export"] = str(tmp_path / "ar.safetensors")
    resolved = validate_training(data, registry, base_dir=tmp_path)
    summary = train(resolved, registry=registry, out_dir=tmp_path / "run", progress=False)
    assert summary["step"] == 30 and "preview_cosine" in summary
    log = _log(tmp_path / "run")
    fit = next(record for record in log if record.get("event") == "fit")
    assert fit["fit_items"] == 48 and fit["pca_dims"] == 4 and 0 < fit["pca_explained_variance"] <= 1
    losses = [r["loss"] for r in log if "loss" in r and "event" not in r]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > math.log(16) * 0.8 and last < first - 0.3, f"loss {first:.3f} → {last:.3f}"
    # the export carries the fitted codebook: its PCA mean is the mean of the first 48 image embeddings
    from unclip_core.recipe.assemble import build_component
    from unclip_core.training.stages import EmbeddingCache
    from unclip_core.training.loop import collate

    exported = build_component(resolved.model)
    load_weights(exported, tmp_path / "ar.safetensors")
    encoder = build_component(resolved.encoder)
    dataset = build_component(resolved.dataset)
    raw = collate(dataset, list(range(48)))
    _, image_embeds = EmbeddingCache(encoder)(raw["image"], raw["caption"], raw["index"])
    torch.testing.assert_close(exported.codebook.mean, image_embeds.mean(0), atol=1e-5, rtol=0)


def test_resume_is_exact_and_does_not_refit(registry, tiny_recipe_data, tmp_path, monkeypatch):
    from unclip_core.training.loop import CHECKPOINT_NAME, train
    from unclip_core.training.validate import validate_training
    from unclip_core.weights import read_safetensors

    resolved = validate_training(train_recipe(tiny_recipe_data, steps=6), registry, base_dir=tmp_path)
    train(resolved, registry=registry, out_dir=tmp_path / "straight", progress=False)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, max_steps=3)
    fits = []
    original = ARPrior.fit_from_embeddings
    monkeypatch.setattr(ARPrior, "fit_from_embeddings", lambda self, *a: fits.append(1) or original(self, *a))
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, resume=True)
    assert fits == [], "a resumed run refitted the codebook instead of reading it from the checkpoint"
    a = read_safetensors(tmp_path / "straight" / CHECKPOINT_NAME)
    b = read_safetensors(tmp_path / "split" / CHECKPOINT_NAME)
    assert any(key.startswith("model/codebook.") for key in a)
    for key in a:
        if key.startswith(("model/", "ema/", "optim/")):
            assert torch.equal(a[key], b[key]), key


# ------------------------------------------------------------------ the shipped shapes AR prior
@pytest.fixture(scope="module")
def shipped_ar():
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline("shapes", ["prior=shapes-prior-ar.yaml", "upsamplers=[]"])


def _rendered_embeddings(pipeline, scenes) -> torch.Tensor:
    from unclip_plugins.shapes.renderer import render

    with torch.no_grad():
        return F.normalize(pipeline.encode_image([render(s, 32) for s in scenes]), dim=-1)


def test_shipped_codebook_round_trips_unseen_scene_embeddings(shipped_ar):
    """The issue's bar on real embeddings: codes → bucket centres → inverse PCA keeps cosine
    ≥ 0.99 with CLIP embeddings of rendered scenes the codebook was never fitted on."""
    from unclip_plugins.shapes.world import sample_scene

    rng = np.random.default_rng(4242)
    z = _rendered_embeddings(shipped_ar, [sample_scene(rng, "train") for _ in range(256)])
    codebook = shipped_ar.prior.codebook
    with torch.no_grad():
        cosine = F.cosine_similarity(codebook.decode(codebook.encode(z)).double(), z.double(), dim=-1)
    assert float(codebook.explained_variance) >= 0.99
    assert float(cosine.mean()) >= 0.99 and float(cosine.min()) >= 0.98


def test_shipped_ar_prior_lands_near_the_scene_it_is_asked_for(shipped_ar):
    """Sampled z_i for a caption is nearer the CLIP embedding of a render of that caption than of
    renders of captions differing in colour or shape (reference: the rendered scenes)."""
    from unclip_plugins.shapes.world import Scene, ShapeObject

    def one(color: str, shape: str) -> Scene:
        return Scene((ShapeObject(color, shape, 0.5, 0.5, 0.28),))

    captions = {"a red circle": one("red", "circle"), "a blue square": one("blue", "square"),
                "a green triangle": one("green", "triangle"), "a yellow square": one("yellow", "square")}
    renders = _rendered_embeddings(shipped_ar, list(captions.values()))
    text = shipped_ar.encode_text(list(captions))
    z_i = shipped_ar.sample_prior(text, shipped_ar.generator(0))
    similarity = z_i @ renders.T  # [caption, render]
    assert torch.equal(similarity.argmax(dim=1), torch.arange(len(captions))), similarity


def test_eval_runs_with_either_prior_by_one_override(tmp_path, capsys):
    from unclip_core.cli.main import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    for prior in ("shapes-prior-ar.yaml", "shapes-prior-diffusion.yaml"):
        code = main(["eval", "shapes", "--prompts", str(prompts), "-s", "diversity_prompts=0", "--json", "-q",
                     f"prior={prior}", "upsamplers=[]"])
        assert code in (0, None)
        report = json.loads(capsys.readouterr().out)
        assert report["run"]["prompts"] == 2 and report["groups"]["seen_one"]["n"] == 2
