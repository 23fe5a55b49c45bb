"""The deploy tests' checks: manifests validated offline, and the kubectl stand-in's log.

No Kubernetes cluster exists on these machines, so manifests are checked offline: core kinds with
`kubernetes-validate --strict` against its bundled schemas at the pinned Kubernetes version, the
InferenceService with `jsonschema` against KServe's own CRD schema (vendored in tests/data/kserve).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import yaml

from mlserve.deploy.spec import KUBERNETES_VERSION
from support.paths import TESTS

KSERVE_SCHEMA = TESTS / "data" / "kserve" / "inferenceservice-v1beta1.schema.json.gz"


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def validate_core(path: Path) -> str:
    """kubernetes-validate --strict at the pinned version (raises on any error)."""
    import kubernetes_validate

    return kubernetes_validate.validate(load_yaml(path), KUBERNETES_VERSION, strict=True)


def _no_unknown_fields(schema: Any) -> Any:
    """The schema with unknown fields rejected where it lists the fields (the API server's strict
    field validation); subtrees marked x-kubernetes-preserve-unknown-fields stay open."""
    if isinstance(schema, dict):
        schema = {k: _no_unknown_fields(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_no_unknown_fields(v) for v in schema]
    return schema


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = json.loads(gzip.open(KSERVE_SCHEMA).read())
    validator = jsonschema.Draft7Validator(_no_unknown_fields(schema))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kubectl_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [entry["argv"] for entry in map(json.loads, log.read_text().splitlines())
            if entry["tool"] == "kubectl"]
