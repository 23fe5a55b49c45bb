"""Beyond one machine: Kubernetes and KServe manifests for an exported model, and their apply.

    spec.py        what a deployment is asked for (DeploySpec), the model's exported versions
    probes.py      the readiness probe that really checks AVAILABLE in the tensorflow/serving image
    kubernetes.py  Deployment, Service, HorizontalPodAutoscaler, ConfigMap, PVC and loader Pod
    dockerfile.py  the Dockerfile that bakes versions into an image (FROM tensorflow/serving:<tag>,
                   or mlserve's own server where a flag only it has is asked for)
    kserve.py      the InferenceService (serving.kserve.io/v1beta1), with its canary form
    writer.py      the output folder, written whole or not at all
    apply.py       kubectl apply, then wait for the rollout

Nothing here prints or imports TensorFlow; the CLI (`mlserve.cli.deploy`) renders and reports.
"""
