"""The Kubernetes autoscalers and progressive-delivery engines an artifact can be built for,
as small tables of their names (docs/kubernetes.md).

`mlpack build --autoscaler NAME --delivery NAME` records the choice in the target the
manifest holds (`[kubernetes] autoscaler`, `delivery`); the chosen entries' templates are
rendered into the Kubernetes base beside the Deployment (`Target.artifact_groups`), and
`facts.py` reads the rest of their row (what the autoscaler scales, the overlays' patch
paths). Adding an engine is adding its templates and a row here. PURE: no imports of
mlpack beyond this file, so `targets.py` can validate against these tables.
"""

from __future__ import annotations

from dataclasses import dataclass

# The render group the choices extend, and the folder inside it they are rendered into.
KUBERNETES_GROUP = "iac/kubernetes"
KUBERNETES_BASE = "base"


@dataclass(frozen=True)
class Workload:
    """A scalable Kubernetes object kind (what an autoscaler's scaleTargetRef names)."""

    api_version: str
    kind: str


DEPLOYMENT = Workload("apps/v1", "Deployment")


@dataclass(frozen=True)
class Autoscaler:
    name: str
    templates: str  # folder under templates/, rendered into the Kubernetes base
    api_version: str
    kind: str
    # The staging overlay narrows the replica range with these JSON patch paths.
    min_path: str
    max_path: str


@dataclass(frozen=True)
class DeliveryEngine:
    name: str
    templates: str | None  # None: the Deployment's own rolling update, nothing added
    scales: Workload  # what the autoscaler scales under this engine
    # The Deployment's replica count: 0 where the engine runs the pods from its template
    # (an Argo Rollout's workloadRef), else the autoscaler's floor.
    deployment_replicas_zero: bool = False


AUTOSCALERS: dict[str, Autoscaler] = {a.name: a for a in (
    # CPU utilization, Kubernetes' own (the default).
    Autoscaler("hpa", "iac/autoscaling/hpa", "autoscaling/v2", "HorizontalPodAutoscaler",
               "/spec/minReplicas", "/spec/maxReplicas"),
    # KEDA's Prometheus scaler on the agent's requests in flight.
    Autoscaler("keda", "iac/autoscaling/keda", "keda.sh/v1alpha1", "ScaledObject",
               "/spec/minReplicaCount", "/spec/maxReplicaCount"),
)}

DELIVERY_ENGINES: dict[str, DeliveryEngine] = {e.name: e for e in (
    DeliveryEngine("none", None, DEPLOYMENT),
    # A Rollout that runs the Deployment's pod template (workloadRef) in canary steps.
    DeliveryEngine("argo-rollouts", "iac/delivery/argo-rollouts", Workload("argoproj.io/v1alpha1", "Rollout"),
                   deployment_replicas_zero=True),
    # A Canary that copies the Deployment into <name>-primary and shifts traffic by weight.
    DeliveryEngine("flagger", "iac/delivery/flagger", DEPLOYMENT),
)}


def choice_problems(autoscaler: str, delivery: str) -> list[str]:
    """What is wrong with a build's choices, each naming the known ones."""
    problems = []
    if autoscaler not in AUTOSCALERS:
        problems.append(f"autoscaler {autoscaler!r} is not one of {', '.join(AUTOSCALERS)}")
    if delivery not in DELIVERY_ENGINES:
        problems.append(f"delivery {delivery!r} is not one of {', '.join(DELIVERY_ENGINES)}")
    return problems


def chosen_templates(autoscaler: str, delivery: str) -> list[str]:
    """The template folders the choices add to the Kubernetes base, in render order."""
    engine = DELIVERY_ENGINES[delivery].templates
    return [AUTOSCALERS[autoscaler].templates, *([engine] if engine else [])]
