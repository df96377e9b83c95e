"""Vendor the pinned charts by packaging them from their upstream git tags.

For machines without access to the charts' published repositories (this one has only git
snapshots): each chart is packaged from the tree of its release tag exactly as its release
workflow does (`helm package`, after `helm dependency build` put the dependency archives, each
packaged the same way from its own tag, into `charts/`), then vendored by `platform vendor`'s own
`install` (unpack, lock). Where the workflow does more than `helm package`, RECIPES says so.
Plain manifests a project publishes outside its chart (MANIFESTS) are copied verbatim from the
tag's tree (`install_manifests`: each file's sha256 in the lock).

    uv run python scripts/vendor-from-git.py --git argoproj/argo-helm=/path/to/bare.git ...

With network access, use `platform vendor` instead: it fetches the published archive and
verifies it against its repository's digest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import helm_python

from platformctl.vendor import Upstream, install, install_manifests


@dataclass(frozen=True)
class Source:
    repo: str  # owner/name on GitHub
    tag: str
    path: str
    # The release sets version and appVersion at packaging time (the tree holds a placeholder).
    version: str | None = None
    # Files the release leaves out beyond .helmignore.
    drop: tuple[str, ...] = ()
    recipe: str = ""


@dataclass(frozen=True)
class Pin:
    name: str
    repository: str  # where the chart is published
    source: Source
    dependencies: tuple[tuple[str, Source], ...] = ()


_CERT_MANAGER_RECIPE = (
    "make/manifests.mk: helm package --version --app-version of the tag's deploy/charts tree "
    "without signkey_annotation.txt, values.linter.exceptions, README.template.md and tests/; "
    "the artifacthub signKey/prerelease annotations and the README it generates are not added"
)
_EXTERNAL_SECRETS_RECIPE = (
    "the tag's tree as is: the release also generates templates/crds/ from deploy/crds/bundle.yaml "
    "(hack/helm.generate.sh, mikefarah yq), which could not be run here, so this copy installs no "
    "CRDs (installCRDs: false); they are deployed from the same tag's bundle "
    "(manifests: external-secrets-crds), as External Secrets documents for installing them "
    "outside Helm"
)
_BITWARDEN_RECIPE = ".github/workflows/release.yaml: helm package --version --app-version"

PINS = (
    Pin(
        "argo-cd",
        "https://argoproj.github.io/argo-helm",
        Source("argoproj/argo-helm", "argo-cd-10.1.1", "charts/argo-cd"),
        (("redis-ha", Source("DandyDeveloper/charts", "redis-ha-4.38.0", "charts/redis-ha")),),
    ),
    Pin(
        "argo-rollouts",
        "https://argoproj.github.io/argo-helm",
        Source("argoproj/argo-helm", "argo-rollouts-2.41.0", "charts/argo-rollouts"),
    ),
    Pin(
        "kube-prometheus-stack",
        "https://prometheus-community.github.io/helm-charts",
        Source(
            "prometheus-community/helm-charts",
            "kube-prometheus-stack-88.5.3",
            "charts/kube-prometheus-stack",
        ),
        (
            (
                "kube-state-metrics",
                Source(
                    "prometheus-community/helm-charts",
                    "kube-state-metrics-8.4.0",
                    "charts/kube-state-metrics",
                ),
            ),
            (
                "prometheus-node-exporter",
                Source(
                    "prometheus-community/helm-charts",
                    "prometheus-node-exporter-4.56.1",
                    "charts/prometheus-node-exporter",
                ),
            ),
            (
                "grafana",
                Source("grafana-community/helm-charts", "grafana-12.11.1", "charts/grafana"),
            ),
            (
                # Chart.yaml asks for 0.12.*: the newest 0.12 release before this one (2026-08-21)
                "prometheus-windows-exporter",
                Source(
                    "prometheus-community/helm-charts",
                    "prometheus-windows-exporter-0.12.8",
                    "charts/prometheus-windows-exporter",
                ),
            ),
        ),
    ),
    Pin(
        "prometheus-operator-crds",
        "https://prometheus-community.github.io/helm-charts",
        Source(
            "prometheus-community/helm-charts",
            "prometheus-operator-crds-31.0.1",
            "charts/prometheus-operator-crds",
        ),
    ),
    Pin(
        "cert-manager",
        "https://charts.jetstack.io",
        Source(
            "cert-manager/cert-manager",
            "v1.21.1",
            "deploy/charts/cert-manager",
            version="v1.21.1",
            drop=("signkey_annotation.txt", "values.linter.exceptions", "README.template.md"),
            recipe=_CERT_MANAGER_RECIPE,
        ),
    ),
    Pin(
        "external-secrets",
        "https://charts.external-secrets.io",
        Source(
            "external-secrets/external-secrets",
            "helm-chart-2.9.0",
            "deploy/charts/external-secrets",
            recipe=_EXTERNAL_SECRETS_RECIPE,
        ),
        (
            (
                "bitwarden-sdk-server",
                Source(
                    "external-secrets/bitwarden-sdk-server",
                    "v0.6.0",
                    "deploy/charts/bitwarden-sdk-server",
                    version="v0.6.0",
                    recipe=_BITWARDEN_RECIPE,
                ),
            ),
        ),
    ),
    Pin(
        "aws-load-balancer-controller",
        "https://aws.github.io/eks-charts",
        Source("aws/eks-charts", "v0.0.242", "stable/aws-load-balancer-controller"),
    ),
    Pin(
        "external-dns",
        "https://kubernetes-sigs.github.io/external-dns",
        Source(
            "kubernetes-sigs/external-dns", "external-dns-helm-chart-1.21.1", "charts/external-dns"
        ),
    ),
    Pin(
        "metrics-server",
        "https://kubernetes-sigs.github.io/metrics-server",
        Source(
            "kubernetes-sigs/metrics-server",
            "metrics-server-helm-chart-3.13.1",
            "charts/metrics-server",
        ),
    ),
    Pin(
        "cluster-autoscaler",
        "https://kubernetes.github.io/autoscaler",
        Source(
            "kubernetes/autoscaler",
            "cluster-autoscaler-chart-9.59.0",
            "cluster-autoscaler/charts/cluster-autoscaler",
        ),
    ),
    Pin(
        "fluent-bit",
        "https://fluent.github.io/helm-charts",
        Source("fluent/helm-charts", "fluent-bit-0.58.1", "charts/fluent-bit"),
    ),
    Pin(
        "opentelemetry-collector",
        "https://open-telemetry.github.io/opentelemetry-helm-charts",
        Source(
            "open-telemetry/opentelemetry-helm-charts",
            "opentelemetry-collector-0.170.0",
            "charts/opentelemetry-collector",
        ),
    ),
)


@dataclass(frozen=True)
class Manifests:
    """Upstream files deployed as a plain directory: vendored name -> path in the tag's tree."""

    name: str
    version: str  # the release they belong to
    repo: str
    tag: str
    files: tuple[tuple[str, str], ...]
    recipe: str


MANIFESTS = (
    Manifests(
        "external-secrets-crds",
        "2.9.0",
        "external-secrets/external-secrets",
        "helm-chart-2.9.0",
        (("bundle.yaml", "deploy/crds/bundle.yaml"), ("LICENSE", "LICENSE")),
        "verbatim (git show <commit>:<path>): bundle.yaml is deploy/crds/bundle.yaml, the CRDs "
        "docs/introduction/getting-started.md installs outside Helm (kubectl apply "
        "--server-side); LICENSE is the project's (Apache-2.0)",
    ),
)


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True
    ).stdout


def _export(source: Source, git_dirs: dict[str, Path], into: Path) -> tuple[Path, Upstream]:
    git_dir = git_dirs[source.repo]
    commit = _git(git_dir, "rev-parse", f"{source.tag}^{{commit}}").decode().strip()
    archive = _git(git_dir, "archive", "--format=tar", commit, source.path)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    tree = into / source.path
    for name in source.drop:
        (tree / name).unlink(missing_ok=True)
    upstream = Upstream(f"github:{source.repo}", source.tag, commit, source.path, source.recipe)
    return tree, upstream


def _package(tree: Path, source: Source, destination: Path) -> Path:
    return Path(
        helm_python.package(
            tree, destination=destination, version=source.version, app_version=source.version
        )
    )


def vendor(pin: Pin, root: Path, git_dirs: dict[str, Path]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        tree, upstream = _export(pin.source, git_dirs, work / "parent")
        dependencies = {}
        for name, source in pin.dependencies:
            dep_tree, dep_upstream = _export(source, git_dirs, work / "deps" / name)
            (tree / "charts").mkdir(exist_ok=True)
            _package(dep_tree, source, tree / "charts")
            dependencies[name] = dep_upstream
        archive = _package(tree, pin.source, work)
        entry = install(
            root,
            archive,
            repository=pin.repository,
            upstream=upstream,
            dependencies=dependencies,
        )
        print(f"{entry.name} {entry.version} ({entry.app_version}) {entry.digest}")


def vendor_manifests(pin: Manifests, root: Path, git_dirs: dict[str, Path]) -> None:
    git_dir = git_dirs[pin.repo]
    commit = _git(git_dir, "rev-parse", f"{pin.tag}^{{commit}}").decode().strip()
    files = {name: _git(git_dir, "show", f"{commit}:{path}") for name, path in pin.files}
    upstream = Upstream(f"github:{pin.repo}", pin.tag, commit, pin.files[0][1], pin.recipe)
    entry = install_manifests(root, pin.name, pin.version, files, upstream)
    print(f"{entry.name} {entry.version} {entry.files}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument(
        "--git", action="append", default=[], metavar="OWNER/NAME=GIT_DIR", required=True
    )
    parser.add_argument("charts", nargs="*", help="only these (default: every pin)")
    args = parser.parse_args()
    git_dirs = {k: Path(v) for k, v in (item.split("=", 1) for item in args.git)}
    for pin in PINS:
        if not args.charts or pin.name in args.charts:
            vendor(pin, args.root, git_dirs)
    for manifests in MANIFESTS:
        if not args.charts or manifests.name in args.charts:
            vendor_manifests(manifests, args.root, git_dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
