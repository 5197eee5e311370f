"""The wheels a GPU machine without network lacks (bitsandbytes, deap, gguf and what they need), pinned to
the versions installed here, and a check that they fit with the working tree in what may travel (64 MiB).

    python experiments/gpu_wheels.py --out .whl                 # download, then check the size
    python experiments/gpu_wheels.py --out .whl --check-only    # only the size rule, on what is in .whl

On the GPU machine, with .whl carried beside the tree (docs/gpu.md):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD && python3 experiments/gpu_check.py --out $OUT

Exit code 1, with one line, when they do not fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evobench.gpu_check import wheels
from evobench.paths import ROOT


def main(argv: list[str] | None = None, *, download=wheels.pip_download, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".whl"), help="the folder to carry (default .whl)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--limit-mib", type=float, default=wheels.LIMIT_BYTES / 2**20)
    parser.add_argument("--check-only", action="store_true", help="download nothing; check what --out holds")
    args = parser.parse_args(argv)
    out = args.out if args.out.is_absolute() else root / args.out
    pins = wheels.to_carry(args.python_version)
    if not args.check_only:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob("*.whl"):  # one version of each: an older download would travel too
            stale.unlink()
        print("downloading " + ", ".join(f"{name}=={version}" for name, version in pins), flush=True)
        download(pins, out, args.python_version)
    found = sorted(out.glob("*.whl"))
    names = {w.name.split("-")[0].lower().replace("_", "-") for w in found}
    missing = [name for name, _ in pins if name not in names]
    if missing:
        print(f"gpu_wheels: no wheel in {out} for {', '.join(missing)}", file=sys.stderr)
        return 1
    tree, wheel_bytes = wheels.carried_bytes(root, found)
    problem = wheels.too_large(tree, wheel_bytes, int(args.limit_mib * 2**20))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    for wheel in found:
        print(f"  {wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    total = (tree + wheel_bytes) / 2**20
    print(f"{total:.1f} MiB with the working tree ({tree / 2**20:.1f} MiB): fits in {args.limit_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
