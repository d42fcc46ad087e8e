"""Score a pretrained generator on held-out synthetic heads rendered from their true parameters.

Renders N held-out heads × 4 expressions (the first frame, the most open jaw, the most closed eyes,
the farthest from the first) × 3 views (the head's camera and the extra yaws) and compares them with
the synthetic renderer's images: PSNR over the whole image and region PSNR over the eye and mouth
boxes, and the expression gain: how much region PSNR the true expression adds over holding the first
frame's (what a motion controller on this generator can at most gain over a static avatar). Writes JSON
{"psnr", "region_psnr", "expression_gain", "heads", "expressions", "views", "checkpoint", "sha256", "seconds"}
and a contact sheet (per head, a ground-truth row above a render row).

    python scripts/evaluate_generator.py [--checkpoint pretrained/tiny_generator.pt] [--heads 8] [--json PATH]

With --closed-form, the heads' closed-form fields go through a model preset's renderer instead of a
generator: the ceiling its rays and samples put on any generator (choose resolutions by it).

    python scripts/evaluate_generator.py --closed-form [--model tiny] [--rays 128] [--samples 48 48]
"""

from __future__ import annotations

import time
from pathlib import Path

from otavatar.cli import ScriptParser, at_least, available_device, script
from otavatar.evaluation.generator_quality import DEFAULT_GENERATOR, closed_form_settings, evaluate_generator, load_generator_and_embedding, write_generator_report
from otavatar.files import check_outputs


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_GENERATOR, help="a file written by scripts/pretrain_generator.py")
    parser.add_argument("--heads", type=at_least(1), default=8, help="held-out heads to render")
    parser.add_argument("--json", type=Path, default=Path("outputs/generator_quality.json"))
    parser.add_argument("--sheet", type=Path, help="the contact sheet (default: beside the JSON, .png)")
    parser.add_argument("--device", type=available_device, default="cpu")
    parser.add_argument("--closed-form", action="store_true", help="render the closed-form fields through --model's renderer")
    parser.add_argument("--model", default="tiny", help="with --closed-form: the model preset (configs/model/) whose renderer is used")
    parser.add_argument("--rays", type=at_least(1), help="with --closed-form: rays per side (default: the preset's neural rendering resolution)")
    parser.add_argument("--samples", type=at_least(1), nargs=2, metavar=("COARSE", "FINE"), help="with --closed-form: samples per ray")
    args = parser.parse_args(argv)
    sheet = args.sheet or args.json.with_suffix(".png")
    check_outputs({} if args.closed_form else {"--checkpoint": args.checkpoint}, files={"--json": args.json, "--sheet": sheet}, make_folders=True)

    started = time.perf_counter()
    if args.closed_form:
        settings = closed_form_settings(args.model, args.rays, args.samples)
        result, source = evaluate_generator(None, None, args.heads, closed_form=settings), None
        name = f"closed-form fields through {args.model}'s renderer ({settings.rays}² rays, {settings.options['depth_resolution']} + {settings.options['depth_resolution_importance']} samples)"
    else:
        generator, embedding = load_generator_and_embedding(args.checkpoint, args.device)
        result, source, name = evaluate_generator(generator, embedding, args.heads), args.checkpoint, f"generator {args.checkpoint}"
    report = write_generator_report(result, source, args.json, sheet)
    print(f"{name}: {report['heads']} held-out heads × {report['expressions']} expressions × {report['views']} views: "
          f"PSNR {report['psnr']:.2f} dB, region PSNR {report['region_psnr']:.2f} dB, "
          f"expression gain {report['expression_gain']:+.2f} dB ({time.perf_counter() - started:.0f} s); "
          f"wrote {args.json}, {sheet}")


if __name__ == "__main__":
    main()
