"""Pretrain the tiny generator on synthetic heads (the embedded default's G_eg).

    python scripts/pretrain_generator.py                       # configs/pretrain.yaml → pretrained/tiny_generator.pt
    python scripts/pretrain_generator.py iterations=200 out=/tmp/g.pt run_dir=runs/quick
"""

from __future__ import annotations

import os

import hydra
from omegaconf import DictConfig

from otavatar.config import CONFIG_DIR
from otavatar.errors import reported_as_one_line
from otavatar.training.pretrain_from_config import pretrain_from_config


@hydra.main(config_path=str(CONFIG_DIR), config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with reported_as_one_line(debug=os.environ.get("HYDRA_FULL_ERROR") == "1"):
        print(f"generator: {pretrain_from_config(cfg)}")


if __name__ == "__main__":
    main()
