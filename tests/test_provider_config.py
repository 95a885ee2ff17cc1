"""The `provider:` entry of a pod: type, id, key variable name, server override.

Same table style as test_config.py: each bad row must produce exactly one problem,
at the right line and field path, with its hint.
"""

from __future__ import annotations

from textwrap import dedent

import pytest

from sessions.config.loader import ConfigError, ProviderConfig, parse_config
from sessions.config.model import PROVIDER_TYPES
from sessions.config.schema import PROVIDER_OPTIONS

POD = "pods:\n  - name: a\n    host: h\n"


def provider_of(text: str) -> ProviderConfig:
    return parse_config(dedent(text), "cfg.yaml").pods[0].provider


def test_every_type_parses_and_keeps_its_options() -> None:
    for kind in PROVIDER_TYPES:
        assert provider_of(POD + f"    provider: {{type: {kind}, id: x1}}\n") == ProviderConfig(kind, "x1", line=4)


def test_http_provider_with_key_variable_and_server_override() -> None:
    p = provider_of(POD + "    provider:\n      type: runpod\n      id: abc\n"
                    "      api_key_env: MY_RUNPOD_KEY\n      api_url: http://127.0.0.1:8080/\n      ssh_proxy: true\n")
    assert (p.type, p.id, p.api_key_env, p.api_url, p.line) == ("runpod", "abc", "MY_RUNPOD_KEY", "http://127.0.0.1:8080", 5)
    assert dict(p.options) == {"ssh_proxy": True}


def test_ssh_shutdown_flag_and_cli_options() -> None:
    assert provider_of(POD + "    provider: {type: ssh, shutdown_stops_billing: true}\n").shutdown_stops_billing
    assert not provider_of(POD + "    provider: {type: ssh}\n").shutdown_stops_billing
    aws = provider_of(POD + "    provider: {type: aws, id: i-0abc, region: eu-west-1, profile: work}\n")
    assert dict(aws.options) == {"region": "eu-west-1", "profile": "work"}
    az = provider_of(POD + "    provider: {type: azure, id: vm1, resource_group: rg}\n")
    assert dict(az.options) == {"resource_group": "rg"}


@pytest.mark.parametrize(("written", "canonical"), [
    ("vast", "vastai"), ("Vast.ai", "vastai"), ("lambdalabs", "lambda"), ("RunPod", "runpod"),
    ("ec2", "aws"), ("gce", "gcp"), ("sky", "skypilot"), ("tnr", "thunder"),
])
def test_common_spellings_are_read_as_the_canonical_type(written: str, canonical: str) -> None:
    assert provider_of(POD + f"    provider: {{type: {written}, id: 1}}\n").type == canonical


def test_numeric_ids_stay_text() -> None:
    assert provider_of(POD + "    provider: {type: vastai, id: 123456}\n").id == "123456"


def test_options_table_covers_every_type() -> None:
    assert set(PROVIDER_OPTIONS) == set(PROVIDER_TYPES)


F = "pods[0] (a).provider"
ERRORS = [
    (POD + "    provider: {type: runpd, id: x}\n", 4, f"{F}.type", "unknown provider 'runpd'; did you mean 'runpod'?"),
    (POD + "    provider: {type: lamda}\n", 4, f"{F}.type", "did you mean 'lambda'?"),
    (POD + "    provider: {type: hetzner}\n", 4, f"{F}.type", "known providers: runpod, vastai, lambda"),
    (POD + "    provider: {type: runpod, id: ''}\n", 4, f"{F}.id", "got an empty string"),
    (POD + "    provider: {type: runpod, api_url: 'api.runpod.io'}\n", 4, f"{F}.api_url", "expected an http:// or https:// URL"),
    (POD + "    provider: {type: runpod, api_url: 'ftp://x'}\n", 4, f"{F}.api_url", "expected an http:// or https:// URL"),
    (POD + "    provider: {type: runpod, api_url: 'https://u:p@x'}\n", 4, f"{F}.api_url", "must not carry a user or password"),
    (POD + "    provider: {type: runpod, api_url: 'https://x/?a=1'}\n", 4, f"{F}.api_url", "without '?' or '#'"),
    (POD + "    provider: {type: runpod, api_url: 'https://api.runpod.io/v2'}\n", 4, f"{F}.api_url",
     "gpuctl appends /v2/... itself, so write 'https://api.runpod.io'"),
    (POD + "    provider: {type: lambda, api_url: 'https://cloud.lambda.ai/api/v1/'}\n", 4, f"{F}.api_url",
     "write 'https://cloud.lambda.ai'"),
    (POD + "    provider: {type: runpod, api_key_env: 2KEY}\n", 4, f"{F}.api_key_env", "environment variable name"),
    (POD + "    provider: {type: runpod, api_key_env: [A]}\n", 4, f"{F}.api_key_env", "got a list"),
    (POD + "    provider: {type: runpod, api_url_: x}\n", 4, f"{F}.api_url_", "did you mean 'api_url'?"),
    (POD + "    provider: {type: runpod, colour: x}\n", 4, f"{F}.colour", "keys runpod understands: type, id, api_key_env"),
    (POD + "    provider: {type: runpod, api_key: s3cr3t}\n", 4, f"{F}.api_key", "never goes in the config"),
    (POD + "    provider: {type: aws, api_key: s3cr3t}\n", 4, f"{F}.api_key", "aws CLI's own credentials"),
    (POD + "    provider: {type: gcp, api_key_env: K}\n", 4, f"{F}.api_key_env", "gcloud's own login"),
    (POD + "    provider: {type: azure, api_url: 'https://x'}\n", 4, f"{F}.api_url", "reached through its CLI"),
    (POD + "    provider: {type: runpod, shutdown_stops_billing: true}\n", 4, f"{F}.shutdown_stops_billing",
     "only type: ssh"),
    (POD + "    provider: {type: ssh, shutdown_stops_billing: 'yes'}\n", 4, f"{F}.shutdown_stops_billing",
     "expected true or false"),
    (POD + "    provider: {type: runpod, ssh_proxy: 1}\n", 4, f"{F}.ssh_proxy", "expected true or false"),
    (POD + "    provider:\n      type: vastai\n      id: 1\n      id: 2\n", 7, f"{F}.id", "duplicate"),
]


@pytest.mark.parametrize(("text", "line", "field", "fragment"), ERRORS,
                         ids=[f"{r[2]}:{r[3][:40]}" for r in ERRORS])
def test_error_is_reported_once_with_line_field_and_hint(text: str, line: int, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml")
    problems = info.value.problems
    assert len(problems) == 1, "\n".join(map(str, problems))
    assert (problems[0].line, problems[0].field) == (line, field), str(problems[0])
    assert fragment in problems[0].message


def test_a_pasted_key_is_never_echoed_back() -> None:
    key = "rpa-ZZ9PLURALZALPHA-0123456789abcdef"
    for text in (POD + f"    provider: {{type: runpod, api_key_env: '{key}'}}\n",
                 POD + f"    provider: {{type: runpod, token: {key}}}\n",
                 POD + f"    provider: {{type: lambda, api_key: {key}}}\n"):
        with pytest.raises(ConfigError) as info:
            parse_config(text, "cfg.yaml")
        assert key not in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(POD + f"    provider: {{type: runpod, api_key_env: '{key}'}}\n", "cfg.yaml")
    assert "looks like a key itself" in str(info.value)


def test_file_line_field_in_the_printed_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(POD + "    provider: {type: runpd}\n", "/c/config.yaml")
    assert str(info.value) == ("/c/config.yaml:4:22: pods[0] (a).provider.type: unknown provider 'runpd'; "
                               "did you mean 'runpod'?")
