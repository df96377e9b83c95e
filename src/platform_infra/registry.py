"""One ECR repository per service, shared by every stage: promotion moves a digest between
environments, it never rebuilds. The first stage's stack owns them and keeps them when it is
destroyed; the other stacks only read them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from platform_infra.common import child, policy_document, tags
from platformctl.stacks import RegistrySettings

PULL_ACTIONS = [
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
]


@dataclass(frozen=True)
class RegistryArgs:
    settings: RegistrySettings
    environment: str
    # The account being deployed to: it must be the one the images live in.
    account_id: str
    # Repositories that already exist (the preflight read them).
    existing: frozenset[str] = frozenset()


def lifecycle_policy(keep_images: int) -> str:
    """Untagged layers go after two weeks; tagged images beyond the newest ``keep_images``.

    ``keep_images`` must cover everything still deployed or a rollback target in any stage.
    """
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Drop untagged images after 14 days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 14,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the newest {keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                },
            ]
        },
        sort_keys=True,
    )


class Registry(pulumi.ComponentResource):
    repository_urls: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("platform:infra:Registry", name, None, opts)
        settings = args.settings
        if not settings.owned:
            raise ValueError("only the first stage's stack owns the registry")
        if settings.account_id != args.account_id:
            raise ValueError(
                f"the images live in account {settings.account_id} but these credentials deploy "
                f"to {args.account_id}: assume a role in {settings.account_id}"
            )
        self.repository_urls = {}
        for service, path in sorted(settings.repositories.items()):
            repository = aws.ecr.Repository(
                f"{name}-{service}",
                name=path,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                # The AWS-managed ECR key: unlike this stack's own key it outlives the stack,
                # and the repositories are kept when the stack goes.
                encryption_configurations=[{"encryption_type": "KMS"}],
                force_delete=False,
                tags=tags(args.environment, path, service=service),
                # Kept on destroy, so a rebuilt stack adopts what is there instead of failing
                # on a name that exists.
                opts=child(
                    self,
                    retain_on_delete=True,
                    import_=path if path in args.existing else None,
                ),
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{service}",
                repository=repository.name,
                policy=lifecycle_policy(settings.keep_images),
                opts=child(self),
            )
            if settings.pull_account_ids:
                aws.ecr.RepositoryPolicy(
                    f"{name}-{service}",
                    repository=repository.name,
                    policy=policy_document(
                        [
                            {
                                "Sid": "StagesInOtherAccountsPull",
                                "Effect": "Allow",
                                "Principal": {
                                    "AWS": [
                                        f"arn:aws:iam::{account}:root"
                                        for account in settings.pull_account_ids
                                    ]
                                },
                                "Action": PULL_ACTIONS,
                            }
                        ]
                    ),
                    opts=child(self),
                )
            self.repository_urls[service] = repository.repository_url
        self.register_outputs({"repositoryUrls": self.repository_urls})
