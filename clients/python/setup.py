"""Build hooks of ferry-client: generate the gRPC stubs from Ferry's proto files.

The proto files live outside this directory (``<repo>/proto``). A build from a
checkout (``pip install ./clients/python``) reads them there; an sdist carries
a copy under ``proto/`` so a wheel can be built from it anywhere.
"""

import re
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO = "ferry/v1/jobs.proto"
PACKAGE_PROTO = "ferry_client/_proto"


def proto_root() -> Path:
    """The directory holding ferry/v1/jobs.proto: the sdist's copy, else the repository's."""
    for root in (HERE / "proto", HERE.parent.parent / "proto"):
        if (root / PROTO).is_file():
            return root
    raise SystemExit(
        f"ferry-client: cannot find {PROTO}; build from a checkout of the Ferry repository "
        "(pip install ./clients/python) or from the ferry-client sdist"
    )


def generate(out_dir: Path) -> Path:
    """Compiles jobs.proto into out_dir/ferry_client/_proto; returns the generated _pb2.py."""
    from grpc_tools import protoc

    import grpc_tools

    with tempfile.TemporaryDirectory() as tmp:
        # The proto is compiled as ferry_client/_proto/jobs.proto so that the
        # generated gRPC module imports it as ferry_client._proto.jobs_pb2.
        staged = Path(tmp) / PACKAGE_PROTO
        staged.mkdir(parents=True)
        shutil.copy(proto_root() / PROTO, staged / "jobs.proto")
        target = out_dir / PACKAGE_PROTO
        target.mkdir(parents=True, exist_ok=True)
        include = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"{PACKAGE_PROTO}/jobs.proto",
        ]
        if protoc.main(args) != 0:
            raise SystemExit("ferry-client: grpcio-tools failed to compile jobs.proto")
        (target / "__init__.py").write_text('"""Generated from proto/ferry/v1/jobs.proto at build time."""\n')
    return target / "jobs_pb2.py"


def runtime_requirements() -> list:
    """grpcio and protobuf at least as new as the generator, as the generated code demands."""
    with tempfile.TemporaryDirectory() as tmp:
        pb2 = generate(Path(tmp)).read_text()
    found = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2, re.M)
    protobuf = f"protobuf>={'.'.join(found.groups())}" if found else "protobuf>=4.21"
    return [
        f"grpcio>={version('grpcio-tools')}",
        protobuf,
        "googleapis-common-protos>=1.56",
    ]


class BuildPy(build_py):
    """Generates the stubs into the build tree next to the hand-written package."""

    def run(self):
        super().run()
        generate(Path(self.build_lib))


class Sdist(sdist):
    """Carries the proto file inside the sdist, so a wheel builds from it anywhere."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        dest = Path(base_dir) / "proto" / PROTO
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(proto_root() / PROTO, dest)


setup(
    install_requires=runtime_requirements(),
    cmdclass={"build_py": BuildPy, "sdist": Sdist},
)
