"""Evidence for the fine-tuning recipe's defaults: each component switched off in turn.

One real set (default: bone age, the set where the image carries the signal), its five
patient-grouped folds from ``benchmarks/real_data.py``, and ``recipes/<set>.yaml`` run
as-is and then once per component with that component off:

| component | recipe value | off |
|---|---|---|
| LP-FT (linear probe first) | ``lp_epochs: 3`` | ``lp_epochs: 0`` |
| frozen BatchNorm statistics | ``freeze_bn: true`` | ``false`` |
| layer-wise learning-rate decay | ``layer_decay: 0.7`` | ``1.0`` |
| EMA of the weights | ``ema_decay: 0.99`` | ``null`` |
| flip averaging at test time | ``tta_hflip: true`` | ``false`` |

Each variant is compared with the full recipe on the same images (paired patient bootstrap
for MAE, DeLong for AUC; ``osteolens.evaluation.compare``). A component earns its place
when switching it off does not help; with 78 images only large effects are detectable.

    .venv/bin/python benchmarks/finetune_ablation.py                 # bone age, about 35 min on 2 cores
    .venv/bin/python benchmarks/finetune_ablation.py --set spine
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, write_section  # noqa: E402
from real_data import REPO, SETS, _fmt, folded_manifest, paired, recipe_run, summary  # noqa: E402

from osteolens.data.paths import shared_dataset  # noqa: E402

COMPONENTS: dict[str, tuple[str, str, Any]] = {
    "lp": ("LP-FT (linear probe first)", "lp_epochs", 0),
    "freeze_bn": ("frozen BatchNorm statistics", "freeze_bn", False),
    "layer_decay": ("layer-wise learning-rate decay", "layer_decay", 1.0),
    "ema": ("EMA of the weights", "ema_decay", None),
    "tta": ("flip averaging at test time", "tta_hflip", False),
}


def variant(name: str, manifest: Path, work: Path, label: str, overrides: dict[str, Any]) -> tuple[pd.DataFrame, float]:
    """Out-of-fold predictions of one variant and its training seconds (sum over folds). A finished
    run in ``work`` is reused (``--fresh`` retrains), so a stopped ablation goes on where it was."""
    run_dir = work / "runs" / f"{name}_{label}"
    if (run_dir / "oof_predictions.csv").exists():
        oof = pd.read_csv(run_dir / "oof_predictions.csv")
        oof["image"] = [str(Path(p).resolve()) for p in oof["image"]]
    else:
        oof = recipe_run(name, manifest, work, label, overrides)
    seconds = sum(json.loads(p.read_text())["seconds"] for p in run_dir.glob("fold*/result.json"))
    return oof, seconds


def run(name: str, work: Path, fresh: bool) -> list[dict[str, Any]]:
    """The full recipe and one variant per component off; each row with its paired comparison."""
    spec = SETS[name]
    manifest = folded_manifest(name, work)
    if fresh:
        shutil.rmtree(work / "runs", ignore_errors=True)
    recipe = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    full, seconds = variant(name, manifest, work, "full", {})
    rows: list[dict[str, Any]] = [{"label": f"recipes/{name}.yaml as is", **summary(full, spec), "versus": None,
                                   "seconds": seconds}]
    for key, (label, field, off) in COMPONENTS.items():
        if recipe.get(field) == off:
            continue
        oof, seconds = variant(name, manifest, work, f"no_{key}", {field: off})
        rows.append({"label": f"without {label} (`{field}: {yaml.safe_dump(off).splitlines()[0]}`)",
                     **summary(oof, spec), "versus": paired(oof, full, spec), "seconds": seconds})
        print(rows[-1], flush=True)
    return rows


def markdown(name: str, rows: list[dict[str, Any]]) -> str:
    import torch

    spec = SETS[name]
    metric = "AUC osteoporosis vs rest" if spec["metric"] == "auc" else "MAE (months)"
    lines = [
        f"## Fine-tuning recipe: each component off in turn, {name} (`benchmarks/finetune_ablation.py`)",
        "",
        f"Machine: {machine_description()}; torch threads {torch.get_num_threads()}.",
        f"Command: `.venv/bin/python benchmarks/finetune_ablation.py --set {name}`. The five patient-grouped folds "
        "of `benchmarks/real_data.py`, every image scored once out of fold; the difference is the variant minus the "
        "full recipe on the same images (paired patient bootstrap, 2000, for MAE; DeLong for AUC). Training time is "
        "the sum of the folds' own seconds; it is inflated where the machine was shared with other jobs.",
        "",
        f"| variant | {metric} [95 % CI] | difference vs the full recipe [95 % CI], p | training time (5 folds) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        v = r["versus"]
        diff = "reference" if v is None else (
            f"{v['difference']:+.3f} [{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
            + (f", p = {v['p']:.3g}" if v.get("p") is not None else ""))
        lines.append(f"| {r['label']} | {_fmt(r['value'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {diff} | "
                     f"{r['seconds'] / 60:.1f} min |")
    better = "higher" if spec["metric"] == "auc" else "lower"
    helped = [r["label"] for r in rows[1:] if r["versus"]["ci_low"] is not None and (
        r["versus"]["ci_low"] > 0 if spec["metric"] == "auc" else r["versus"]["ci_high"] < 0)]
    lines += ["", f"Switching a component off gave a significantly {better} score for: "
              + ("; ".join(helped) if helped else "none") + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="bone_age", choices=sorted(SETS))
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "benchmark_finetune_ablation")
    parser.add_argument("--fresh", action="store_true", help="retrain every variant (default: reuse finished runs)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if shared_dataset(SETS[args.set]["folder"]) is None:
        sys.exit(f"real data not found for {args.set}: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    args.work.mkdir(parents=True, exist_ok=True)
    text = markdown(args.set, run(args.set, args.work, args.fresh))
    print(text)
    if not args.no_write:
        write_section(f"finetune_ablation_{args.set}", text)


if __name__ == "__main__":
    main()
