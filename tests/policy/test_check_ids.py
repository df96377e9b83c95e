"""checkov's check ids, which explaining an unused exception needs, are kept on disk: importing
checkov's registry for them cost every promotion most of a second."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from platformctl.policy.checkov_engine import CHECK_IDS_FILE, REPLACED_CHECKS, check_ids

READ_IN_A_NEW_PROCESS = """
import sys
from pathlib import Path
from platformctl.policy.checkov_engine import check_ids
ids = check_ids(Path(sys.argv[1]))
print(len(ids), "checkov.kubernetes.checks.resource.registry" in sys.modules)
"""


def _new_process(folder: Path) -> tuple[int, bool]:
    result = subprocess.run(
        [sys.executable, "-c", READ_IN_A_NEW_PROCESS, str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    count, imported = result.stdout.split()
    return int(count), imported == "True"


def test_the_ids_are_read_from_the_cache_without_importing_checkov(tmp_path: Path) -> None:
    fresh = check_ids()
    assert set(REPLACED_CHECKS) <= fresh  # checkov's own registry, not a list of ours
    assert _new_process(tmp_path) == (len(fresh), True)  # first: imported, then kept
    assert (tmp_path / CHECK_IDS_FILE).is_file()
    assert _new_process(tmp_path) == (len(fresh), False)  # next: from the file alone
    assert check_ids(tmp_path) == fresh


def test_ids_kept_for_another_checkov_are_not_believed(tmp_path: Path) -> None:
    kept = {"fingerprint": "0.0.0:/elsewhere", "entries": {"ids": ["CKV_MADE_UP"]}}
    (tmp_path / CHECK_IDS_FILE).write_text(json.dumps(kept))
    ids = check_ids(tmp_path)
    assert "CKV_MADE_UP" not in ids
    assert set(REPLACED_CHECKS) <= ids
