"""CrossGuard entry point: serves the rules of ``platformctl.infra.rules`` to the engine."""

from pulumi_policy import EnforcementLevel, PolicyPack

from platformctl.infra.crossguard import PACK_NAME, policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
