"""Train the synthetic expression/pose regressor used for AED/APD on synthetic heads.

    python scripts/train_regressor.py --dataset datasets/synthetic_128 --out pretrained/tiny_regressor.pt
"""

from __future__ import annotations

from otavatar.cli import ScriptParser, at_least, script
from otavatar.data.lmdb import VideoLmdb
from otavatar.evaluation.synthetic_regressor import RegressorTraining, regressor_error, train_regressor
from otavatar.files import check_outputs
from otavatar.training.checkpointing import atomic_torch_save


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--dataset", default="datasets/synthetic_128")
    parser.add_argument("--resolution", type=at_least(1), default=128)
    parser.add_argument("--out", default="pretrained/tiny_regressor.pt")
    parser.add_argument("--steps", type=at_least(1), default=RegressorTraining.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_outputs({"--dataset": args.dataset}, files={"--out": args.out})
    database = VideoLmdb(args.dataset, args.resolution)
    model = train_regressor(database, RegressorTraining(steps=args.steps, seed=args.seed))
    error = regressor_error(model, database, database.splits["test"])
    atomic_torch_save({"state_dict": model.state_dict(), "test_error": error, "recipe": {k: v for k, v in vars(args).items() if k != "debug"}}, args.out)
    print(f"wrote {args.out}; mean absolute error on the test split: expression {error['expression']:.4f}, pose {error['pose']:.4f}")


if __name__ == "__main__":
    main()
