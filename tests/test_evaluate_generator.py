"""scripts/evaluate_generator.py on a random micro generator saved in scripts/pretrain_generator.py's format."""

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
from tests.helpers import micro_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A random micro generator and embedding, and the file holding them: ``{'G_ema', 'embedding', 'model', 'recipe'}``."""
    torch.manual_seed(0)
    cfg = micro_config()
    generator, embedding = build_generator(cfg.generator).eval(), ParameterEmbedding(cfg.generator.z_dim).eval()
    path = tmp_path_factory.mktemp("generator") / "generator.pt"
    torch.save({"G_ema": generator.state_dict(), "embedding": embedding.state_dict(),
                "model": OmegaConf.to_container(cfg), "recipe": {"iterations": 0}}, path)
    return generator, embedding, path


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate_generator.py"), *map(str, args)], capture_output=True, text=True)


def test_script_writes_the_scores_and_a_contact_sheet(pretrained, tmp_path):
    _, _, checkpoint = pretrained
    out = tmp_path / "quality" / "generator.json"
    result = run("--checkpoint", checkpoint, "--heads", 2, "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) == {"psnr", "region_psnr", "expression_gain", "heads", "expressions", "views", "checkpoint", "sha256", "seconds"}
    assert (report["heads"], report["expressions"], report["views"]) == (2, 4, 3)
    assert all(math.isfinite(report[key]) for key in ("psnr", "region_psnr", "expression_gain", "seconds"))
    assert report["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest() and report["checkpoint"] == str(checkpoint)
    assert f"PSNR {report['psnr']:.2f} dB, region PSNR {report['region_psnr']:.2f} dB" in result.stdout.strip().splitlines()[-1]
    sheet = Image.open(out.with_suffix(".png"))
    assert sheet.width > 12 * 128 and sheet.height > 4 * 128  # 4 expressions × 3 views; truth and render rows of 2 heads
    assert not list(out.parent.glob(".*.tmp"))  # written atomically: no temporary file left


def test_missing_or_unfit_files_are_named_in_one_line(pretrained, tmp_path):
    missing = run("--checkpoint", tmp_path / "nowhere.pt", "--json", tmp_path / "out.json")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nowhere.pt" in missing.stderr
    generator, _, _ = pretrained
    no_embedding = tmp_path / "generator_only.pt"
    torch.save({"G_ema": generator.state_dict(), "model": OmegaConf.to_container(micro_config())}, no_embedding)
    unfit = run("--checkpoint", no_embedding, "--json", tmp_path / "out.json")
    assert unfit.returncode == 2 and unfit.stderr.count("\n") == 1 and "generator_only.pt: has no parameter 'embedding'" in unfit.stderr
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


def test_closed_form_fields_through_the_renderer_give_its_ceiling(tmp_path):
    # The heads' exact fields through the tiny renderer: far above a random generator, and finer rays
    # score higher (measured on 8 heads: 23.3 dB at 64² rays, 30.1 dB at 128²).
    coarse = evaluate_generator(None, None, heads=1, closed_form=closed_form_settings("tiny"))
    assert coarse.renders.shape == coarse.truth.shape == (1, 12, 3, 128, 128)
    assert 21 < coarse.psnr < 26 and coarse.region_psnr > 17
    # Exact fields draw every expression: holding the first frame's costs 5.2 dB in the eye and mouth boxes.
    assert coarse.expression_gain > 3
    fine = evaluate_generator(None, None, heads=1, closed_form=closed_form_settings("tiny", rays=128, samples=(16, 16)))
    assert fine.psnr > coarse.psnr + 2  # 26.2 against 23.4 dB with 16 + 16 samples
    out = tmp_path / "ceiling.json"
    result = run("--closed-form", "--heads", 1, "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["checkpoint"] is None and abs(report["psnr"] - coarse.psnr) < 1e-6
    assert "closed-form fields through tiny's renderer (64² rays, 24 + 24 samples)" in result.stdout
    missing = run("--closed-form", "--model", "nothing", "--json", tmp_path / "no.json")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "model preset 'nothing':" in missing.stderr and "does not exist" in missing.stderr
