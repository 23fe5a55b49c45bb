"""A Dockerfile that bakes exported versions into an image built FROM the pinned tensorflow/serving.

The output folder is the build context: `model/<name>/<version>/` holds copies of the versions and
each is copied to `/models/<name>/<version>/`, where the image's entrypoint serves them from
(`--model_base_path=/models/$MODEL_NAME`).
"""
from __future__ import annotations

from pathlib import Path

from mlserve.deploy.spec import MODELS_ROOT, DeploySpec

CONTEXT_DIR = "model"


def default_image(spec: DeploySpec) -> str:
    """The baked image's reference when --image is not given: <name>:v<latest version>."""
    return f"{spec.name}:v{spec.versions[-1]}"


def dockerfile(spec: DeploySpec) -> str:
    lines = [
        f"# Written by `mlserve deploy kubernetes`: TF Serving {spec.tag} with {spec.model_name} "
        f"version(s) {', '.join(map(str, spec.versions))} baked in.",
        f"# Build and push: docker build -t {spec.image} . && docker push {spec.image}",
        f"FROM {spec.serving_image}",
        f"ENV MODEL_NAME={spec.model_name}",
    ]
    for version in spec.versions:
        lines.append(f"COPY {CONTEXT_DIR}/{spec.model_name}/{version} "
                     f"{MODELS_ROOT}/{spec.model_name}/{version}/")
    return "\n".join(lines) + "\n"


def context_files(spec: DeploySpec) -> dict[str, Path]:
    """Build-context path -> the exported version folder copied there."""
    return {f"{CONTEXT_DIR}/{spec.model_name}/{v}": Path(spec.base_path) / str(v) for v in spec.versions}
