"""Build datasets in the reference LMDB layout.

    python scripts/preprocess.py synthetic --out datasets/synthetic --identities 40 --videos 2 --frames 64 --resolution 128
"""

from __future__ import annotations

import argparse

from otavatar.data.synthetic_dataset import write_synthetic_dataset


def synthetic(args: argparse.Namespace) -> None:
    summary = write_synthetic_dataset(
        args.out, args.identities, args.videos, args.frames, args.resolution, args.seed, args.test_identities
    )
    print(
        f"wrote {summary.videos} videos ({summary.frames} frames, {summary.identities} identities) at "
        f"{summary.resolution}² to {summary.root} in {summary.seconds:.1f} s, {summary.bytes / 2**20:.1f} MiB; "
        f"contact sheet: {summary.contact_sheet}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthetic", help="procedural talking heads with exact ground truth")
    synth.add_argument("--out", required=True)
    synth.add_argument("--identities", type=int, default=40)
    synth.add_argument("--videos", type=int, default=2, help="videos per identity")
    synth.add_argument("--frames", type=int, default=64, help="frames per video")
    synth.add_argument("--resolution", type=int, default=128, help="image size, 64 to 512")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--test-identities", type=int, default=None, help="default: a tenth of the identities")
    synth.set_defaults(run=synthetic)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
