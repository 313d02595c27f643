"""Generates the package's protobuf classes from ``schemas/proto``.

    python clients/python/scripts/generate.py           # rewrite src/backbone_client/_gen
    python clients/python/scripts/generate.py --check   # exit 1 if _gen is stale

The classes are committed, so ``pip install ./clients/python`` needs no
protoc; ``--check`` (run by the package's tests) fails when a ``.proto``
changed and ``_gen`` was not regenerated. protoc's imports
(``from backbone import options_pb2``) are rewritten to the package
(``from backbone_client._gen.backbone import options_pb2``), so the
classes import without touching ``sys.path`` and type checkers find them.
Needs ``grpcio-tools`` (pinned in ``clients/python/requirements.txt``).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]
PROTO_ROOT = REPO / "schemas" / "proto"
GEN = PACKAGE / "src" / "backbone_client" / "_gen"
HEADER = '"""Generated from schemas/proto by clients/python/scripts/generate.py: do not edit."""\n'

_IMPORT = re.compile(r"^(from|import) backbone(?=[. ])", re.MULTILINE)


def generate(into: Path) -> None:
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))
    if not protos:
        sys.exit(f"generate: no .proto files under {PROTO_ROOT}")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
         f"--python_out={into}", f"--pyi_out={into}", *protos],
        cwd=PROTO_ROOT, check=True,
    )
    for path in sorted(into.rglob("*.py*")):
        text = path.read_text(encoding="utf-8")
        path.write_text(_IMPORT.sub(r"\1 backbone_client._gen.backbone", text), encoding="utf-8")
    for directory in [into, *sorted(d for d in into.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").write_text(HEADER, encoding="utf-8")
    write_catalog(into)


_CLASS = re.compile(r"^class (\w+)\((?:_message\.Message|int, metaclass=_enum_type_wrapper\.EnumTypeWrapper)\):",
                    re.MULTILINE)


def write_catalog(into: Path) -> None:
    """``events.py``: every message and enum class of the schemas under
    one import (``from backbone_client.events import UserFollowed``)."""
    lines, names = [], []
    for stub in sorted(into.rglob("*_pb2.pyi")):
        module = ".".join(("backbone_client", "_gen", *stub.relative_to(into).with_suffix("").parts))
        classes = _CLASS.findall(stub.read_text(encoding="utf-8"))
        clash = sorted(set(classes) & set(names))
        if clash:
            sys.exit(f"generate: {', '.join(clash)} defined twice; the catalog needs unique names")
        names += classes
        lines += [f"from {module} import {name} as {name}" for name in classes]
    body = "\n".join(lines)
    exported = ",\n".join(f"    {n!r}" for n in names)
    (into / "events.py").write_text(
        f"{HEADER}\n{body}\n\n__all__ = [\n{exported},\n]\n", encoding="utf-8"
    )


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "_gen"
        fresh.mkdir()
        generate(fresh)
        if args.check:
            if GEN.is_dir() and same_tree(fresh, GEN):
                return 0
            print(f"generate: {GEN} is stale; run python clients/python/scripts/generate.py",
                  file=sys.stderr)
            return 1
        shutil.rmtree(GEN, ignore_errors=True)
        shutil.copytree(fresh, GEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
