"""The documented verify recipe, loaded from the Markdown exactly as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where the recipe is documented: each copy found is run.
DOCS = [ROOT / "docs" / "WEBHOOKS.md", ROOT / "README.md"]
Verify = Callable[..., bool]


def documented_recipes() -> list[tuple[str, Verify]]:
    """(document, its verify_signature) for every Python block that defines one."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
            if "def verify_signature(" in block:
                namespace: dict[str, object] = {}
                exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102 - our own documentation
                found.append((doc.relative_to(ROOT).as_posix(), namespace["verify_signature"]))
    return found  # type: ignore[return-value]


def documented_verify() -> Verify:
    recipes = documented_recipes()
    assert recipes, "no verify_signature recipe found in the docs"
    return recipes[0][1]
