"""Score a trained network on a labelled folder: accuracy, AUROC, F1 and the confusion matrix.

    python evaluate.py --pretrained best ../shared/data/dogs-vs-cats/validation
    python evaluate.py --ckpt runs/best/version_0/checkpoints/best.ckpt photos/ --json
    python evaluate.py --pretrained quick photos/ --report mistakes/ --top 16

The folder is any layout train.py reads, which gives each photo its label; a layout with a
held-out part (train/ plus validation/) is scored on that part, as train.py tests. The
metrics are the torchmetrics objects train.py logs test/acc, test/auroc and test/f1 with,
so on the test folder this prints the test/acc train.py printed (in float32). `--report DIR` writes
DIR/index.html, one self-contained page of the most confident mistakes, each with the
explain.py command that walks it layer by layer, and DIR/mistakes.png, the same photos
as one picture.
"""

import argparse
import html
import json
import shlex
import sys
from pathlib import Path

from torchmetrics.classification import BinaryConfusionMatrix
from torchvision.utils import save_image

from datasets import DataError
from explanation.live import png_data_uri
from inference import ModelFileError
from inference.command_line import ArgumentParser, add_model_source, load_model_source, model_source, run_cli
from inference.evaluation import ScoredFolder, confident_mistakes, score_folder
from models import CLASS_NAMES
from models.classifier import binary_metrics
from training.tensorboard_pictures import probe_grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="labelled photos in a layout train.py reads (datasets/layouts.py)")
    add_model_source(parser, "checkpoint written by train.py (.ckpt), or a file from export.py")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--report", metavar="DIR", type=Path, help="write the mistakes page and picture here")
    parser.add_argument("--top", metavar="K", type=int, default=16, help="mistakes to show (default 16)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error(f"--top {args.top}: pass 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = load_model_source(args)
        scored = score_folder(model, args.folder, progress=not args.json)
    except (ModelFileError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, reason in scored.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    results = scores(scored, model.threshold)
    explain = ["python", "explain.py", "--ckpt" if args.ckpt else "--pretrained", model_source(args)]
    index = confident_mistakes(scored.p_cat, scored.labels, model.threshold, args.top)
    results["mistakes"] = mistakes = [
        {
            "path": scored.paths[k],
            "label": CLASS_NAMES[int(scored.labels[k])],
            "p_cat": float(scored.p_cat[k]),
            "explain": shlex.join([*explain, scored.paths[k]]),
        }
        for k in index
    ]
    if args.report:
        try:
            write_report(args.report, scored, index, results, model.threshold)
        except OSError as error:
            print(f"error: cannot write '{args.report}': {error.strerror or error}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    (tn, fp), (fn, tp) = results["confusion_matrix"]
    print(f"{results['photos']} photos of {args.folder} ({scored.layout}), threshold {model.threshold}")
    print(f"acc {results['acc']:.4f}  auroc {results['auroc']:.4f}  f1 {results['f1']:.4f}")
    print(f"confusion matrix   predicted dog  predicted cat\n  true dog  {tn:17d}  {fp:13d}")
    print(f"  true cat  {fn:17d}  {tp:13d}")
    for mistake in mistakes[:3]:
        print(f"a mistake: {mistake['label']}, p_cat {mistake['p_cat']:.3f}: {mistake['explain']}")
    if args.report:
        print(
            f"wrote {args.report / 'index.html'}" + (f" and {args.report / 'mistakes.png'}" if index else "")
        )
    return 0


def scores(scored: ScoredFolder, threshold: float) -> dict:
    """Accuracy, AUROC and F1 by the objects training logs them with, and the confusion matrix
    (rows: true dog, cat; columns: predicted dog, cat) by the one its TensorBoard pictures use."""
    metrics = binary_metrics("", threshold)
    metrics.add_metrics({"confusion_matrix": BinaryConfusionMatrix(threshold)})
    metrics.update(scored.p_cat, scored.labels)
    computed = metrics.compute()
    results = {"photos": len(scored.paths), "skipped": len(scored.skipped), "threshold": threshold}
    return results | {name: value.tolist() for name, value in computed.items()}


def write_report(
    folder: Path, scored: ScoredFolder, index: list[int], results: dict, threshold: float
) -> None:
    """folder/index.html (its photos inside it: nothing fetched) and folder/mistakes.png, of the
    photos `index` (results["mistakes"])."""
    folder.mkdir(parents=True, exist_ok=True)
    if index:
        grid = probe_grid(
            scored.images[index], scored.p_cat[index], scored.labels[index], threshold, len(index)
        )
        save_image(grid.float() / 255, folder / "mistakes.png")
    figures = "".join(
        f'<figure class="mistake"><img src="{png_data_uri(scored.images[k], 128)}" alt="">'
        f'<figcaption><b class="label">mistake: {m["label"]}, p_cat {m["p_cat"]:.3f}</b>'
        f"<span>{html.escape(m['path'])}</span><code>{html.escape(m['explain'])}</code></figcaption></figure>"
        for k, m in zip(index, results["mistakes"], strict=True)
    )
    summary = (
        f"{results['photos']} photos, acc {results['acc']:.4f}, AUROC {results['auroc']:.4f}, "
        f"F1 {results['f1']:.4f}: the {len(index)} mistakes the network was surest of, surest first"
    )
    (folder / "index.html").write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>Most confident mistakes</title>
<style>body{{font:15px system-ui,sans-serif;margin:24px;background:#f4f5f7}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:12px}}
figure{{margin:0;background:#fff;border-radius:8px;padding:10px;display:flex;gap:10px}}
img{{width:128px;height:128px;image-rendering:pixelated;border:3px solid #dc1e1e;border-radius:4px}}
figcaption{{display:flex;flex-direction:column;gap:4px;font-size:13px;overflow-wrap:anywhere}}
code{{font-size:11.5px;background:#f1f3f6;padding:3px}}</style></head>
<body><h1>Most confident mistakes</h1><p id="summary">{html.escape(summary)}</p>
<div class="grid">{figures or "<p>No mistakes.</p>"}</div></body></html>
""",
        encoding="utf-8",
    )


if __name__ == "__main__":
    sys.exit(run_cli(main))
