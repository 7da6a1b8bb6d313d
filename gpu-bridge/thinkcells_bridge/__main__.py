"""python -m thinkcells_bridge --session NAME --dir DIR [--idle-timeout S] [--device D] [--threads N] [--nproc N]

With --nproc N > 1 it takes the session's lock and becomes torchrun, which starts this module N
times as ranks (distributed.py); started by torchrun itself (multi-node), it is one rank."""

import argparse
import os
import sys

from .environment import exit_code, problems

# Before any OpenBLAS loads (PyPI's, for the native step where torch's BLAS is not reachable):
# its own threads spin between calls and, next to torch's and the native kernels' threads, made
# decoding 2-3x slower on 2 cores (bench/README.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def absolute_dir(value: str) -> str:
    # The client resolves the directory against its caller's cwd; resolved again here, in
    # gpu-bridge/, a relative one would name another directory (and put the token in the repository).
    if not os.path.isabs(value):
        raise argparse.ArgumentTypeError(f"expected an absolute path, got {value!r}")
    return value


def at_least_one(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def main() -> None:
    found = problems()
    if found:
        print(
            f"{sys.executable} cannot run the thinkcells bridge:\n" + "\n".join(f"- {p}" for p in found),
            file=sys.stderr,
        )
        raise SystemExit(exit_code("unfit_environment"))
    parser = argparse.ArgumentParser(prog="thinkcells_bridge")
    parser.add_argument("--session", required=True)
    parser.add_argument(
        "--dir", required=True, type=absolute_dir, help="directory for the socket, token and log (absolute)"
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=900.0, help="seconds with no client before exiting (0: never)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument(
        "--nproc", type=at_least_one, default=1, help="ranks on this machine, under torchrun (1: no torchrun)"
    )
    args = parser.parse_args()
    # Only now: on an unfit interpreter these imports are what would fail.
    import torch

    from .loading import pick_device
    from .server import BridgeServer, UnsafePath

    # Else torch's default, a thread per physical core: with PyPI's MKL build, two threads on 2
    # cores trained a 20M model 1.8x faster than one and sampled no slower (bench/README.md).
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.nproc > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
            from . import distributed

            distributed.main(args)
            return
        BridgeServer(args.session, args.dir, args.idle_timeout, pick_device(args.device)).serve_forever()
    except UnsafePath as exc:
        raise SystemExit(f"thinkcells bridge: {exc}") from None  # the message is the whole story


if __name__ == "__main__":
    main()
