"""Decoupling-by-inverting training.

    python scripts/train.py experiment=tiny_synthetic         # the embedded model's CPU recipe (≈ 80 min on 2 cores)
    python scripts/train.py                                   # the release's schedule on the tiny preset (GPU-sized)
    python scripts/train.py experiment=hdtf                   # the paper's setting
    torchrun --nproc_per_node=4 scripts/train.py experiment=hdtf
    python scripts/train.py trainer.schedule=joint run_dir=runs/joint
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from otavatar.config import CONFIG_DIR
from otavatar.errors import reported_as_one_line
from otavatar.training.from_config import train_from_config


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # A bad setting or file is one line and exit status 2; HYDRA_FULL_ERROR=1 shows its traceback.
    with reported_as_one_line(debug=os.environ.get("HYDRA_FULL_ERROR") == "1"):
        checkpoint = train_from_config(cfg)
    print(f"last checkpoint: {checkpoint}")


if __name__ == "__main__":
    main()
