"""The usual way to gate a GitOps repository: render to files, then run the tools over them.

``python -m benchmarks.usual ROOT OUT`` writes every target ``platform verify`` checks as
``OUT/<env>/<target>.yaml`` (there is no ``helm`` binary here, so the same in-process Helm SDK
renders them: the rendering costs both sides the same) and prints, as JSON, which files each
Kubernetes version validates. The harness then runs the ``kubernetes-validate`` CLI once per
version and ``checkov -d OUT`` once, as a CI job would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from platformctl.model import load_repo
from platformctl.render import Rendered, Renderer


def render_tree(root: Path, out: Path) -> dict[str, list[str]]:
    """Rendered files by the Kubernetes version they are validated against."""
    repo = load_repo(root)
    renderer = Renderer(repo)
    targets: list[Rendered] = []
    for environment in repo.environments:
        targets += [renderer.gitops(environment), renderer.addons(environment)]
        # and the upstream chart each add-on Application deploys, as verify renders it
        targets += [renderer.render(job) for job in renderer.addon_chart_jobs(environment)]
    targets += [renderer.release(release) for release in repo.select((), ())]
    by_version: dict[str, list[str]] = {}
    for target in targets:
        path = out / target.environment.name / f"{target.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(target.text)
        by_version.setdefault(target.environment.kubernetes_version, []).append(str(path))
    return by_version


if __name__ == "__main__":
    print(json.dumps(render_tree(Path(sys.argv[1]), Path(sys.argv[2]))))
