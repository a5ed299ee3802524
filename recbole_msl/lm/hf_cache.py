"""The name transformers gives a model's KV cache: ``cache`` in current releases, ``past_key_values`` before.

Passing or reading the old name on a current release works but logs a deprecation warning from
every process, so the name is looked up once here and used everywhere.
"""

from __future__ import annotations

from transformers.modeling_outputs import BaseModelOutputWithPast

NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def cache_kwargs(cache) -> dict:
    """``{NAME: cache}``, to pass to a model's forward."""
    return {NAME: cache}


def cache_of(output):
    """The KV cache a forward returned."""
    return getattr(output, NAME)
