"""``braggflow-launch``: run a distributed program the same way inside and outside SLURM.

``braggflow-launch torchrun --nproc-per-node N -- CMD ...``
    outside SLURM: ``torchrun --standalone --nproc-per-node N --no-python CMD ...``.
``braggflow-launch ray -- CMD ...``
    outside SLURM: runs CMD; its driver calls ``ray.init()`` and starts a local Ray.
``braggflow-launch mpi -n N -- CMD ...``
    outside SLURM: ``mpiexec -n N CMD ...`` (falls back to one process without an MPI launcher).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        raise SystemExit("braggflow-launch: error: separate the command with '--'")
    i = list(argv).index("--")
    return list(argv[:i]), list(argv[i + 1 :])


def torchrun_command(nproc: int, cmd: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "--no-python", *cmd,
    ]


def mpi_command(n: int, cmd: list[str]) -> list[str]:
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None or n <= 1:
        return cmd
    return [mpiexec, "-n", str(n), *cmd]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, cmd = _split(argv)
    parser = argparse.ArgumentParser(prog="braggflow-launch")
    parser.add_argument("kind", choices=["torchrun", "ray", "mpi"])
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("-n", type=int, default=1)
    args = parser.parse_args(head)
    if args.kind == "torchrun":
        full = torchrun_command(args.nproc_per_node, cmd)
    elif args.kind == "mpi":
        full = mpi_command(args.n, cmd)
    else:
        full = cmd
    return subprocess.call(full, env=os.environ.copy())


if __name__ == "__main__":
    sys.exit(main())
