"""Earlier maildiag trees for the benchmarks' side-by-side comparisons.

A goal like "no slower than before issue 10" is measured against the
package as it was at that commit, taken out of git history with
``git archive`` and byte-compiled as pip would install it.
"""

from __future__ import annotations

import compileall
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# When issue 9 ("beyond the port") began: sending, folders, the inbound path.
BEFORE_TICKETS = "2de2deb"
# When issue 10 (architecture, start-up diet) began.
BEFORE_ISSUE_10 = "0b9df00"


def compiled(tree: Path) -> Path:
    compileall.compile_dir(str(tree / "maildiag"), quiet=1)
    return tree


def earlier_tree(commit: str, directory: Path) -> Path | None:
    """``maildiag/`` at ``commit``, unpacked under ``directory`` and compiled.

    None when this checkout has no such history (a shallow clone) or no tar.
    """
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "maildiag"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0 or shutil.which("tar") is None:
        print(f"  skipped: no git history with {commit} here", flush=True)
        return None
    tree = directory / commit
    tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return compiled(tree)
