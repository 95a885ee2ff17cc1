"""From a provider `type` to its module, its key variable and its default server.

Modules are imported only when a provider of that type is built, so loading the
registry (the config checker does, through the sessions layer) costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from backends.providers.base import Provider, ProviderSettings


@dataclass(frozen=True)
class ProviderSpec:
    """What gpuctl knows about a provider type before building it.

    Attributes:
        type: the config's `type:` value.
        label: the provider's name as people write it.
        module, cls: where the implementation lives.
        key_env: the environment variable holding the API key by default, or None
            (CLI providers and ssh use the tool's own credentials, or none).
        url_env: the provider's own variable overriding the server root, or None.
        default_url: the official server root (None for CLI providers).
        first_class: implemented against the provider's documented API and tested
            end to end; the others follow less certain sources (see each module).
    """

    type: str
    label: str
    module: str
    cls: str
    key_env: str | None = None
    url_env: str | None = None
    default_url: str | None = None
    first_class: bool = False


_P = "backends.providers."
SPECS: dict[str, ProviderSpec] = {s.type: s for s in (
    ProviderSpec("runpod", "RunPod", _P + "runpod", "RunPod", "RUNPOD_API_KEY", "RUNPOD_API_BASE_URL",
                 "https://api.runpod.io", first_class=True),
    ProviderSpec("vastai", "Vast.ai", _P + "vastai", "VastAI", "VAST_API_KEY", "VAST_URL",
                 "https://console.vast.ai", first_class=True),
    ProviderSpec("lambda", "Lambda", _P + "lambda_", "Lambda", "LAMBDA_API_KEY", None,
                 "https://cloud.lambda.ai", first_class=True),
    ProviderSpec("tensordock", "TensorDock", _P + "tensordock", "TensorDock", "TENSORDOCK_API_KEY", None,
                 "https://dashboard.tensordock.com"),
    # [unverified] TNR_API_TOKEN is the tnr CLI's variable according to a derived doc.
    ProviderSpec("thunder", "Thunder Compute", _P + "thunder", "Thunder", "TNR_API_TOKEN", None,
                 "https://api.thundercompute.com:8443"),
    ProviderSpec("crusoe", "Crusoe", _P + "crusoe", "Crusoe", "CRUSOE_SECRET_KEY", None,
                 "https://api.cloud.crusoe.ai"),
    ProviderSpec("aws", "AWS EC2", _P + "aws", "Aws"),
    ProviderSpec("gcp", "Google Compute Engine", _P + "gcp", "Gcp"),
    ProviderSpec("azure", "Azure", _P + "azure", "Azure"),
    ProviderSpec("skypilot", "SkyPilot", _P + "skypilot", "SkyPilot"),
    ProviderSpec("dstack", "dstack", _P + "dstack", "Dstack"),
    ProviderSpec("ssh", "SSH host", _P + "ssh", "SshHost"),
)}

CRUSOE_ACCESS_KEY_ENV = "CRUSOE_ACCESS_KEY_ID"
"""Crusoe signs requests with a key id and a secret; this names the id's variable."""


def spec(provider_type: str) -> ProviderSpec:
    """The spec of a type. Raises KeyError for an unknown one (config validation
    rejects those first)."""
    return SPECS[provider_type]


def provider_class(provider_type: str) -> type[Provider]:
    s = spec(provider_type)
    return getattr(importlib.import_module(s.module), s.cls)


def build(provider_type: str, settings: ProviderSettings, **deps: Any) -> Provider:
    """A provider of `provider_type`.

    Args:
        settings: server override, key, options, timeout.
        deps: injected collaborators, passed through: `transport`/`sleep` (HTTP),
            `run`/`which` (CLI), `run_command` (ssh). Each class ignores the rest.
    """
    # Every concrete provider takes (settings, **deps); the abstract base declares no
    # constructor of its own, so the class is called through this wider type.
    factory: Callable[..., Provider] = provider_class(provider_type)
    return factory(settings, **deps)
