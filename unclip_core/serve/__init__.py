"""``unclip serve``: one process that loads recipes once and serves a web page and a JSON API.

- :mod:`~unclip_core.serve.schemas`: the API's request bodies and how an upload is decoded;
- :mod:`~unclip_core.serve.pipelines`: the built pipelines, one per recipe and overrides (a bounded cache);
- :mod:`~unclip_core.serve.batching`: the bounded queue and the worker that runs compatible
  generate requests as one batch;
- :mod:`~unclip_core.serve.operations`: each API operation as a function of a pipeline;
- :mod:`~unclip_core.serve.app`: the FastAPI application (routes, errors, the page).

Needs the ``serve`` extra (``pip install 'unclip[serve]'``); nothing here is imported by the
other commands.
"""
