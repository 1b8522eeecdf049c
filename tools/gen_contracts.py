"""Generates Python code (messages, gRPC stubs, typed .pyi stubs) for every file under proto/.

Runs offline with grpcio-tools and mypy-protobuf. Output goes to libs/contracts/src/zhike/, which
is not committed: `make gen` (and every target that needs it) makes it afresh.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "libs" / "contracts" / "src"


def _include_dirs() -> list[str]:
    # Well-known types come with grpcio-tools; google/type and google/rpc with
    # googleapis-common-protos, which installs its .proto files next to the generated modules.
    well_known = str(resources.files("grpc_tools") / "_proto")
    import google.type.date_pb2 as date_pb2

    googleapis = str(Path(date_pb2.__file__).resolve().parent.parent.parent)
    return [str(PROTO_DIR), well_known, googleapis]


def main() -> int:
    target = OUT_DIR / "zhike"
    if target.exists():
        shutil.rmtree(target)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        sys.stderr.write("no .proto files under proto/\n")
        return 1
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [
        f"--python_out={OUT_DIR}",
        f"--grpc_python_out={OUT_DIR}",
        f"--mypy_out={OUT_DIR}",
        f"--mypy_grpc_out={OUT_DIR}",
        *protos,
    ]
    # protoc finds the mypy-protobuf plugins on PATH: make this environment's scripts visible.
    scripts = str(Path(sys.executable).parent)
    os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    code = protoc.main(args)  # type: ignore[no-untyped-call]
    if code != 0:
        sys.stderr.write(f"protoc failed with exit code {code}\n")
        return int(code)
    # Regular packages (not namespace ones) keep imports and mypy simple.
    for directory in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    (target / "py.typed").touch()
    sys.stdout.write(f"generated {len(protos)} proto files into {target.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
