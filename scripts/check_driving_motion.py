"""How well a saved driving motion follows the clip's mouth: Pearson r of jaw_open against the inner-lip gap.

    python scripts/reenact.py --driving clip.mp4 --save-motion motion.npy --out out.mp4
    python scripts/check_driving_motion.py clip.mp4 motion.npy

The gap is measured independently of the reader (dlib's 68 points on every whole frame, over the eye
corners' distance). The motion must be in the synthetic heads' space (column 0: jaw_open).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from otavatar.cli import ScriptParser, script
from otavatar.errors import InputError
from otavatar.evaluation.landmark_calibration import mouth_opening
from otavatar.motion import read_coefficients


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("clip", type=Path)
    parser.add_argument("motion", type=Path, help="the --save-motion file of scripts/reenact.py")
    args = parser.parse_args(argv)
    jaw = read_coefficients(args.motion)[:, 0].numpy()
    gap = mouth_opening(args.clip)
    if len(gap) != len(jaw):
        raise InputError(f"{args.motion}: {len(jaw)} frames, but {args.clip} has {len(gap)}; expected the motion saved from this clip")
    seen = ~np.isnan(gap)
    r = float(np.corrcoef(jaw[seen], gap[seen])[0, 1])
    print(f"{args.clip}: {len(gap)} frames ({int(seen.sum())} with a face); Pearson r(jaw_open, inner-lip gap) = {r:.3f}")


if __name__ == "__main__":
    main()
