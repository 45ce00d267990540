"""What a :class:`~unclip_core.pipeline.Pipeline` can do beyond text → image, one short
module each: ``variations``, ``interpolation``, ``text_diff`` and ``inversion`` (unCLIP §3),
``inpainting``, and ``classify`` (zero-shot classification and reranking).

Each operation is a function of a pipeline, written only against its chain (encode, prior,
decoder, upsamplers); the pipeline exposes them as methods (``pipeline.variations(...)``).
"""
