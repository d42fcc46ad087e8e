"""Generator quality on held-out heads: a random nano generator saved in scripts/pretrain_generator.py's format and
the closed-form fields' ceiling, through the package; scripts/evaluate_generator.py in one real process, its other
paths and refusals in-process."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from otavatar.config import build_generator
from otavatar.data.synthetic import EXPRESSION_PARAMETERS
from otavatar.evaluation.generator_quality import closed_form_settings, evaluate_generator, held_out_heads, pick_frames
from otavatar.training.pretrain import ParameterEmbedding
from tests.helpers import nano_config, refused, run_script

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A random nano generator (its renders' quality is not what is checked) and embedding, and the file holding
    them: ``{'G_ema', 'embedding', 'model', 'recipe'}``."""
    torch.manual_seed(0)
    cfg = nano_config()
    generator, embedding = build_generator(cfg.generator).eval(), ParameterEmbedding(cfg.generator.z_dim).eval()
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    torch.save({"G_ema": generator.state_dict(), "embedding": embedding.state_dict(),
                "model": OmegaConf.to_container(cfg), "recipe": {"iterations": 0}}, path)
    return generator, embedding, path


def test_script_writes_the_scores_and_a_contact_sheet(pretrained, tmp_path):
    _, _, checkpoint = pretrained
    out = tmp_path / "quality" / "generator.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate_generator.py"), "--checkpoint", str(checkpoint), "--heads", "1",
                             "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"psnr", "region_psnr", "expression_gain", "heads", "expressions", "views", "checkpoint", "sha256", "seconds"}
    assert (report["heads"], report["expressions"], report["views"]) == (1, 4, 3)
    assert all(math.isfinite(report[key]) for key in ("psnr", "region_psnr", "expression_gain", "seconds"))
    assert report["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest() and report["checkpoint"] == str(checkpoint)
    assert f"PSNR {report['psnr']:.2f} dB, region PSNR {report['region_psnr']:.2f} dB" in result.stdout.strip().splitlines()[-1]
    sheet = Image.open(out.with_suffix(".png"))
    assert sheet.width > 12 * 128 and sheet.height > 2 * 128  # 4 expressions × 3 views; a truth and a render row
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temporary file left


def test_missing_or_unfit_files_are_named_in_one_line(pretrained, tmp_path, capsys):
    assert "nowhere.pt" in refused(capsys, "evaluate_generator", "--checkpoint", tmp_path / "nowhere.pt", "--json", tmp_path / "out.json")
    generator, _, _ = pretrained
    no_embedding = tmp_path / "generator_only.pt"
    torch.save({"G_ema": generator.state_dict(), "model": OmegaConf.to_container(nano_config())}, no_embedding)
    unfit = refused(capsys, "evaluate_generator", "--checkpoint", no_embedding, "--json", tmp_path / "out.json")
    assert "generator_only.pt: has no parameter 'embedding'" in unfit
    assert not (tmp_path / "out.json").exists()


def test_evaluation_of_built_modules_is_deterministic_on_held_out_heads(pretrained):
    generator, embedding, _ = pretrained
    first, again = evaluate_generator(generator, embedding, heads=1), evaluate_generator(generator, embedding, heads=1)
    assert first.psnr == again.psnr and first.region_psnr == again.region_psnr and first.expression_gain == again.expression_gain
    assert first.renders.shape == first.truth.shape == (1, 12, 3, 128, 128)
    head = held_out_heads(1)[0]
    frames = pick_frames(head.expression)
    assert len(set(frames)) == 4 and frames[0] == 0
    jaw = EXPRESSION_PARAMETERS.index("jaw_open")
    assert head.expression[frames[1], jaw] == head.expression[1:, jaw].max()
    eyelids = head.expression[:, [EXPRESSION_PARAMETERS.index("right_eyelid"), EXPRESSION_PARAMETERS.index("left_eyelid")]].mean(1)
    assert eyelids[frames[2]] == eyelids[[f for f in range(len(eyelids)) if f not in frames[:2]]].max() and eyelids[frames[2]] > 0.8


def test_closed_form_fields_through_the_renderer_give_its_ceiling(tmp_path, capsys):
    # The heads' exact fields through tiny's renderer (its 64² rays, 24 + 24 samples): far above a random
    # generator, and the ceiling follows the rays (measured on 8 heads: 23.3 dB at 64² rays, 30.1 dB at 128²).
    settings = closed_form_settings("tiny")
    assert (settings.rays, settings.options["depth_resolution"], settings.options["depth_resolution_importance"]) == (64, 24, 24)
    tiny = evaluate_generator(None, None, heads=1, closed_form=settings)
    assert tiny.renders.shape == tiny.truth.shape == (1, 12, 3, 128, 128)
    assert 21 < tiny.psnr < 26 and tiny.region_psnr > 17
    # Exact fields draw every expression: holding the first frame's costs 5.2 dB in the eye and mouth boxes.
    assert tiny.expression_gain > 3
    # Half the rays per side, through the script's --closed-form path: 20.8 against 23.4 dB (128² rays with 16 + 16 samples: 26.2 dB).
    out = tmp_path / "ceiling.json"
    run_script("evaluate_generator", "--closed-form", "--rays", 32, "--heads", 1, "--json", out)
    assert "closed-form fields through tiny's renderer (32² rays, 24 + 24 samples)" in capsys.readouterr().out
    coarse = json.loads(out.read_text())
    assert coarse["checkpoint"] is None and (coarse["heads"], coarse["expressions"], coarse["views"]) == (1, 4, 3)
    assert tiny.psnr > coarse["psnr"] + 2
    missing = refused(capsys, "evaluate_generator", "--closed-form", "--model", "nothing", "--json", tmp_path / "no.json")
    assert "model preset 'nothing':" in missing and "does not exist" in missing
