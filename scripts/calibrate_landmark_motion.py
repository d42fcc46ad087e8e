"""Calibrate and measure the landmark motion reader on synthetic renders with known parameters.

    python scripts/calibrate_landmark_motion.py                 # 16 + 16 heads at 256², about 2 min
    python scripts/calibrate_landmark_motion.py --fit 0 --test 4 --frames 24

Renders synthetic talking heads, reads them as a video (MTCNN, crop, dlib 68 points), prints where
dlib puts the rigid landmarks (triangulated on the --fit heads: otavatar.data.head_pose's
DLIB_RIGID_POINTS) and the reader's mean absolute errors on other heads (--test), as shipped.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from otavatar.cli import ScriptParser, at_least, script
from otavatar.evaluation.landmark_calibration import reader_errors, rigid_points, sequences
from otavatar.preprocess.pipeline import Extractors, PreprocessSettings


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--fit", type=at_least(0), default=16, help="heads whose renders locate the rigid landmarks")
    parser.add_argument("--test", type=at_least(1), default=16, help="other heads the reader is measured on")
    parser.add_argument("--frames", type=at_least(2), default=48)
    parser.add_argument("--resolution", type=at_least(64), default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = PreprocessSettings(size=512, increase=0.39)
    extractors = Extractors(settings, coefficients=False)
    bar = tqdm(total=args.fit + args.test, desc="heads")
    fit = list(sequences(args.fit, args.frames, args.resolution, args.seed, extractors, settings, bar.update))
    test = list(sequences(args.test, args.frames, args.resolution, args.seed + 1, extractors, settings, bar.update))
    bar.close()
    if fit:
        points = rigid_points(fit)
        rows = ", ".join("[" + ", ".join(f"{v:.4f}" for v in row) + "]" for row in points)
        print(f"rigid landmarks where dlib reads them ({args.fit} heads):\nDLIB_RIGID_POINTS = np.array([{rows}])")
    errors = reader_errors(test)
    print(f"reader errors on {args.test} other heads, {errors.frames} frames at {args.resolution}² "
          f"({errors.missed} without a detected face), mean absolute error:\n{errors.table()}")


if __name__ == "__main__":
    main()
