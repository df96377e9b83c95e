"""The rules as a CrossGuard policy pack: each ``Rule`` becomes a mandatory
``ResourceValidationPolicy`` that reports exactly what the tests see."""

from __future__ import annotations

from collections.abc import Iterable

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from platform_infra.rules import RULES, Resource, Rule

PACK_NAME = "platform-aws"


def _validation(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.violations(Resource(args.resource_type, args.name, args.props)):
            report_violation(message, None)

    ported = f" (port of checkov {rule.checkov})" if rule.checkov else ""
    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description + ported,
        enforcement_level=EnforcementLevel.MANDATORY,
        validate=validate,
    )


def policies(rules: Iterable[Rule] = RULES) -> list[ResourceValidationPolicy]:
    return [_validation(rule) for rule in rules]
