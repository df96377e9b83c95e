"""CrossGuard entry point: serves the rules of ``platform_infra.rules`` to the engine."""

from pulumi_policy import EnforcementLevel, PolicyPack

from platform_infra.crossguard import PACK_NAME, policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
