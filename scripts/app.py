"""The web page: upload a portrait and a driving video (or coefficient file), get the talking avatar.

    python scripts/app.py                          # http://127.0.0.1:7860 with the embedded model
    python scripts/app.py --checkpoint CKPT --port 8080 --max-frames 600
    python scripts/app.py --host 0.0.0.0           # reachable from other machines: anyone there can use it

One job runs at a time (the others wait, with their position shown); uploads are deleted when their job ends,
results when the server stops (or after an hour).
"""

from __future__ import annotations

from otavatar.app import AppSettings, serve
from otavatar.cli import ScriptParser, add_pipeline_arguments, at_least, pipeline_settings, positive, script
from otavatar.pipeline import Pipeline


@script
def main(argv: list[str]) -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="the address to bind (default: this machine only)")
    parser.add_argument("--port", type=at_least(1), default=7860)
    parser.add_argument("--max-upload-mb", type=positive, default=AppSettings.max_upload_mb, help="per uploaded file (MB = 10⁶ bytes)")
    parser.add_argument("--max-frames", type=at_least(1), default=AppSettings.max_frames, help="driving frames rendered (a longer clip is cut)")
    parser.add_argument("--orbit-frames", type=at_least(1), default=AppSettings.orbit_frames, help="frames of the avatar's orbit video")
    add_pipeline_arguments(parser)
    args = parser.parse_args(argv)
    if args.port > 65535:
        parser.error(f"--port {args.port}: ports go up to 65535")
    settings = AppSettings(args.max_upload_mb, args.max_frames, args.orbit_frames)
    serve(Pipeline.load(pipeline_settings(args)), settings, args.host, args.port)


if __name__ == "__main__":
    main()
