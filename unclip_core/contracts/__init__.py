"""The contract suite: the promises of :mod:`unclip_core.interfaces`, checked the same way for
every component, built-in or third-party.

A plugin's own test suite runs it on its component::

    from unclip_core.contracts import check_component

    def test_my_prior_keeps_the_contract():
        check_component("prior", MyPrior, MyPriorConfig(embed_dim=16))

Every check is a plain function that raises :class:`AssertionError` with a message naming the
component and the promise it broke, so it works under any test runner (pytest is not
imported). The individual checks are public too, for a component that needs only some of them
or special inputs; :func:`make_text_encoding`, :func:`make_exact_denoiser` and
:func:`make_training_batch` build the inputs they use.

What is checked (see each function for details):

* settings: unknown keys are rejected, a dump reads back (:func:`check_config_rejects_unknown_settings`,
  :func:`check_config_dump_roundtrip`);
* the component is the kind it is registered as, and its sizes are the ones its config
  declares (:func:`check_kind`, :func:`check_declared_matches`);
* per kind: tensor shapes, norms and dtypes, guidance, conditioning flags, best-of-N, the
  sampler's loop (:func:`check_encoder`, :func:`check_prior`, :func:`check_decoder`,
  :func:`check_upsampler`, :func:`check_sampler`, :func:`check_autoencoder`, :func:`check_dataset`);
* same seed, same result, whatever torch's global RNG holds (:func:`check_determinism`);
* weights saved as safetensors load into a fresh build and give identical outputs
  (:func:`check_state_dict_roundtrip`);
* ``training_loss`` trains (:func:`check_train_step_reduces_loss`).

The checks run tiny batches on the component's device; a component built from a tiny config
passes the whole suite in seconds on a CPU.

One module per kind of component (``encoder``, ``prior``, ``decoder``, ``upsampler``,
``sampler``, ``dataset``, ``evaluation``), one per cross-cutting promise (``settings``,
``declared``, ``determinism``, ``weights``, ``training``), and ``suite`` runs them all;
everything public is importable from this package.
"""
from __future__ import annotations

from unclip_core.contracts.autoencoder import check_autoencoder
from unclip_core.contracts.dataset import check_dataset
from unclip_core.contracts.declared import check_declared_matches
from unclip_core.contracts.decoder import check_decoder
from unclip_core.contracts.determinism import check_determinism
from unclip_core.contracts.diffusion_model import check_diffusion_model
from unclip_core.contracts.encoder import check_encoder
from unclip_core.contracts.evaluation import check_evaluation
from unclip_core.contracts.inputs import ExactDenoiser, make_exact_denoiser, make_text_encoding, make_training_batch
from unclip_core.contracts.prior import check_prior
from unclip_core.contracts.sampler import check_sampler
from unclip_core.contracts.settings import check_config_dump_roundtrip, check_config_rejects_unknown_settings, check_kind
from unclip_core.contracts.suite import check_component, check_plugin_registers
from unclip_core.contracts.training import check_train_step_reduces_loss
from unclip_core.contracts.upsampler import check_upsampler
from unclip_core.contracts.weights import check_state_dict_roundtrip

__all__ = [
    "ExactDenoiser",
    "check_autoencoder",
    "check_component",
    "check_config_dump_roundtrip",
    "check_config_rejects_unknown_settings",
    "check_dataset",
    "check_declared_matches",
    "check_decoder",
    "check_determinism",
    "check_diffusion_model",
    "check_encoder",
    "check_evaluation",
    "check_kind",
    "check_plugin_registers",
    "check_prior",
    "check_sampler",
    "check_state_dict_roundtrip",
    "check_train_step_reduces_loss",
    "check_upsampler",
    "make_exact_denoiser",
    "make_text_encoding",
    "make_training_batch",
]
