"""Export a training checkpoint's EMA generator and controller for inference (what pretrained/otavatar_tiny.pt is).

    python scripts/export_model.py runs/tiny_synthetic/checkpoint_000000150.pt pretrained/otavatar_tiny.pt
"""

from __future__ import annotations

from pathlib import Path

from otavatar.checkpoints import file_sha256
from otavatar.cli import ScriptParser, script
from otavatar.files import check_outputs
from otavatar.training.checkpointing import export_model


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("checkpoint", type=Path, help="a training checkpoint (runs/<name>/checkpoint_*.pt)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    check_outputs({"the checkpoint": args.checkpoint}, files={"out": args.out})
    out = export_model(args.checkpoint, args.out)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, sha256 {file_sha256(out)})")


if __name__ == "__main__":
    main()
