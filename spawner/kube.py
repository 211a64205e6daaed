"""`EGIKubeSpawner`: KubeSpawner with VO profiles and quota admission (entry point egi-kube).

The same `VOSpawnerMixin` as the local spawner: the profile (KubeSpawner's own
``kubespawner_override`` handling) is applied first, then the `QuotaPolicy` admits the
pod with its real requests and limits. Pods carry ``egi.eu/vo`` and ``egi.eu/profile``
labels; KubeSpawner's ``safe`` name scheme keeps pod names valid for any username. A pod
the Kubernetes API refuses because a ResourceQuota is exceeded gives the same kind of
clear refusal as the hub's own quota.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner

from .quota import Charge, QuotaExceededError
from .vo_spawning import VOSpawnerMixin

__all__ = ["EGIKubeSpawner", "label_value"]


def label_value(text: str) -> str:
    """A valid Kubernetes label value (63 characters of ``[A-Za-z0-9._-]``, alnum ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-._")


class EGIKubeSpawner(VOSpawnerMixin, KubeSpawner):
    """KubeSpawner whose profiles follow VO rules and whose pods pass the quota policy."""

    async def apply_profile(self, profile: dict[str, Any]) -> None:
        # KubeSpawner applies the profile chosen in user_options itself (overrides,
        # profile_options); doing it now makes the resources known before admission.
        await self.load_user_options()

    def label_charge(self, charge: Charge) -> None:
        labels = {"egi.eu/vo": label_value(charge.vo or "none")}
        if charge.profile:
            labels["egi.eu/profile"] = label_value(charge.profile)
        self.extra_labels = {**self.extra_labels, **labels}

    async def _make_create_pod_request(self, pod: Any, request_timeout: int) -> bool:
        try:
            return await super()._make_create_pod_request(pod, request_timeout)
        except ApiException as e:
            body = str(e.body or "")
            if e.status == 403 and "exceeded quota" in body:
                message = _status_message(body)
                raise QuotaExceededError(
                    f"Quota reached: the Kubernetes ResourceQuota of namespace "
                    f"{self.namespace} refuses this server ({message})."
                ) from None
            raise


def _status_message(body: str) -> str:
    """The ``message`` of a Kubernetes Status body (or the body itself)."""
    import json

    try:
        return str(json.loads(body).get("message") or body)
    except (ValueError, AttributeError):
        return body
