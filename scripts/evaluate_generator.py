"""Score a pretrained generator on held-out synthetic heads rendered from their true parameters.

Renders N held-out heads × 4 expressions (the first frame, the most open jaw, the most closed eyes,
the farthest from the first) × 3 views (the head's camera and the extra yaws) and compares them with
the synthetic renderer's images: PSNR over the whole image and region PSNR over the eye and mouth
boxes. Writes JSON {"psnr", "region_psnr", "heads", "expressions", "views", "checkpoint", "sha256",
"seconds"} and a contact sheet (per head, a ground-truth row above a render row).

    python scripts/evaluate_generator.py [--checkpoint pretrained/tiny_generator.pt] [--heads 8] [--json PATH]
"""

from __future__ import annotations

import time
from pathlib import Path

from otavatar.cli import ScriptParser, at_least, available_device, script
from otavatar.evaluation.generator_quality import DEFAULT_GENERATOR, evaluate_generator, load_generator_and_embedding, write_generator_report
from otavatar.files import check_outputs


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_GENERATOR, help="a file written by scripts/pretrain_generator.py")
    parser.add_argument("--heads", type=at_least(1), default=8, help="held-out heads to render")
    parser.add_argument("--json", type=Path, default=Path("outputs/generator_quality.json"))
    parser.add_argument("--sheet", type=Path, help="the contact sheet (default: beside the JSON, .png)")
    parser.add_argument("--device", type=available_device, default="cpu")
    args = parser.parse_args(argv)
    sheet = args.sheet or args.json.with_suffix(".png")
    check_outputs({"--checkpoint": args.checkpoint}, files={"--json": args.json, "--sheet": sheet}, make_folders=True)

    started = time.perf_counter()
    generator, embedding = load_generator_and_embedding(args.checkpoint, args.device)
    result = evaluate_generator(generator, embedding, args.heads)
    report = write_generator_report(result, args.checkpoint, args.json, sheet)
    print(f"generator {args.checkpoint}: {report['heads']} held-out heads × {report['expressions']} expressions × {report['views']} views: "
          f"PSNR {report['psnr']:.2f} dB, region PSNR {report['region_psnr']:.2f} dB ({time.perf_counter() - started:.0f} s); "
          f"wrote {args.json}, {sheet}")


if __name__ == "__main__":
    main()
