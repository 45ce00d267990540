"""Library package ``diffusers_folders``: reading diffusers and transformers model folders, the
code the ``karlo``, ``kandinsky22`` and ``stable_unclip`` importers share (JSON configs, weights
and tokenizer checks in :mod:`.files`; typed config values and the settings of a CLIP text tower,
a ``PriorTransformer`` and its scheduler in :mod:`.settings`; transformers' CLIP config keys in
:mod:`.clip_config`; the CLIP encoder and the prior written as unclip components in
:mod:`.importing`; transformers imported on demand in :mod:`.transformers_clip`).

It is a plain library, not a plugin: it registers nothing (no ``unclip`` entry point) and imports
no plugin, so a plugin that uses it keeps working whichever other plugins are installed. Plugins
share code through it (or through ``unclip_core``), never by importing each other's modules.
"""
