"""Generation at scale: a prompt file in, a folder of images (or tar shards) and a manifest out.

``unclip generate --prompts FILE --out-dir DIR`` (docs/batch.md). The modules, one job each:
:mod:`.prompt_file` reads the prompts, :mod:`.requests` draws several prompts' images in one
batch, :mod:`.plan` cuts the pending work into batches and ranks, :mod:`.manifest` records
what is finished (the truth a rerun resumes from), :mod:`.runner` ties them together (under
``torchrun`` too), :mod:`.shards_out` packs finished images into WebDataset shards and
:mod:`.scoring` scores a finished folder.
"""
