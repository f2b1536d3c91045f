#!/usr/bin/env python3
"""Write (or --check) the Unity .meta files of the UPM package in unity_client/.

An immutable install (a package added by git URL lands read-only in Library/PackageCache) cannot get
.meta files written by Unity, so every asset and folder of the package must ship one with a stable,
unique GUID. Folders ending in `~` (Samples~, Documentation~) and hidden files are ignored by Unity
and get none; nor does the package root itself.

GUIDs are deterministic: md5("com.omokage.client/" + path inside the package). Existing .meta files
are never rewritten, so a GUID once committed stays.

    python tests/csharp/gen_meta.py            # create missing .meta files
    python tests/csharp/gen_meta.py --check    # exit 1 on a missing, orphan, malformed or duplicate .meta
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "unity_client"
NAME = "com.omokage.client"

FOLDER = """fileFormatVersion: 2
guid: {guid}
folderAsset: yes
DefaultImporter:
  externalObjects: {{}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""
SCRIPT = """fileFormatVersion: 2
guid: {guid}
MonoImporter:
  externalObjects: {{}}
  serializedVersion: 2
  defaultReferences: []
  executionOrder: 0
  icon: {{instanceID: 0}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""
ASMDEF = """fileFormatVersion: 2
guid: {guid}
AssemblyDefinitionImporter:
  externalObjects: {{}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""
MANIFEST = """fileFormatVersion: 2
guid: {guid}
PackageManifestImporter:
  externalObjects: {{}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""
TEXT = """fileFormatVersion: 2
guid: {guid}
TextScriptImporter:
  externalObjects: {{}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""
DEFAULT = """fileFormatVersion: 2
guid: {guid}
DefaultImporter:
  externalObjects: {{}}
  userData:
  assetBundleName:
  assetBundleVariant:
"""


def template(path: Path) -> str:
    if path.is_dir():
        return FOLDER
    if path.name == "package.json":
        return MANIFEST
    return {".cs": SCRIPT, ".asmdef": ASMDEF, ".asmref": ASMDEF, ".md": TEXT, ".txt": TEXT,
            ".json": TEXT, ".xml": TEXT}.get(path.suffix, DEFAULT)


def ignored(rel: Path) -> bool:
    return any(part.startswith(".") or part.endswith("~") for part in rel.parts)


def assets() -> list[Path]:
    out = []
    for p in sorted(PACKAGE.rglob("*")):
        rel = p.relative_to(PACKAGE)
        if ignored(rel) or p.suffix == ".meta":
            continue
        out.append(p)
    return out


def guid_for(rel: Path) -> str:
    return hashlib.md5(f"{NAME}/{rel.as_posix()}".encode()).hexdigest()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    problems: list[str] = []
    created = 0
    guids: dict[str, Path] = {}
    wanted = set()
    for asset in assets():
        rel = asset.relative_to(PACKAGE)
        meta = asset.with_name(asset.name + ".meta")
        wanted.add(meta)
        if not meta.exists():
            if check:
                problems.append(f"missing {meta.relative_to(PACKAGE)}")
                continue
            meta.write_text(template(asset).format(guid=guid_for(rel)))
            created += 1
        m = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.M)
        if not m:
            problems.append(f"no 32-hex guid in {meta.relative_to(PACKAGE)}")
            continue
        if m.group(1) in guids:
            problems.append(f"duplicate guid {m.group(1)}: {meta.relative_to(PACKAGE)} and {guids[m.group(1)]}")
        guids[m.group(1)] = meta.relative_to(PACKAGE)
    for meta in sorted(PACKAGE.rglob("*.meta")):
        rel = meta.relative_to(PACKAGE)
        if ignored(rel):
            problems.append(f"{rel}: no .meta inside hidden or ~ folders")
        elif meta not in wanted:
            problems.append(f"orphan {rel} (its asset is gone)")
    for p in problems:
        print(f"meta: {p}", file=sys.stderr)
    if not check:
        print(f"meta: {created} created, {len(guids)} assets")
    else:
        print(f"meta: {len(guids)} assets checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
