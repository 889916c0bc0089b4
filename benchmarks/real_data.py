"""What the image adds on the real shared sets: six approaches in the same patient-grouped folds.

Sets (``../shared/data`` or ``$OSTEOLENS_DATA``), each with 5 folds grouped by patient
(knee: byte-identical files merged into one group, files filed in two classes dropped):

| set | question | metric | covariates |
|---|---|---|---|
| knee | osteoporosis vs rest | AUC (DeLong CI) | age, sex |
| bone_age | bone age in months | MAE (patient bootstrap CI) | sex |
| spine | osteoporosis vs rest | AUC (DeLong CI) | none (acquisition baseline) |

Approaches:

(a) covariates only, and acquisition only (original image size, intensity statistics):
    linear model (logistic / ridge, penalty searched in nested grouped folds);
(b) radiomics (pyradiomics first-order, GLCM, GLRLM, GLSZM) + the same linear model;
(c) CNN from random initialisation (``recipes/<set>.yaml`` with random weights, no LP-FT);
(d) the ``cnn`` embedding probe: frozen ImageNet ``efficientnet_lite0`` features + linear model;
(e) the fine-tuning recipe ``recipes/<set>.yaml`` (ImageNet weights, LP-FT, layer decay, EMA);
(f) image + covariates: the embedding probe's out-of-fold score stacked with the covariates
    in the same outer folds (the covariate model plus what the image adds), and the recipe
    with ``tabular`` covariates fused by offset.

Paired tests against the covariates-only model (acquisition-only for spine) use the same
images: DeLong for AUC, a paired patient bootstrap for MAE (``osteolens.evaluation.compare``).

    .venv/bin/python benchmarks/real_data.py                       # all sets, all approaches
    .venv/bin/python benchmarks/real_data.py --sets bone_age --skip c,e   # the cheap ones
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, write_section  # noqa: E402

from osteolens.data.manifest import Manifest  # noqa: E402
from osteolens.data.paths import shared_dataset  # noqa: E402
from osteolens.data.splits import assign_folds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SETS: dict[str, dict[str, Any]] = {
    "knee": {"folder": "knee_osteoporosis", "target": "label", "task": "binary", "positive": "osteoporosis",
             "covariates": ["age", "sex"], "metric": "auc", "fused_recipe": True},
    "bone_age": {"folder": "bone_age_rsna", "target": "boneage_months", "task": "regression", "positive": None,
                 "covariates": ["sex"], "metric": "mae", "fused_recipe": False},
    "spine": {"folder": "spine_osteoporosis_sriher", "target": "label", "task": "binary", "positive": "osteoporosis",
              "covariates": [], "metric": "auc", "fused_recipe": False},
}
RADIOMICS = {"name": "radiomics", "params": {"classes": ["firstorder", "glcm", "glrlm", "glszm"]}}


# --------------------------------------------------------------------------- manifests
def folded_manifest(name: str, work: Path) -> Path:
    """The set's manifest with 5 patient-grouped folds (no external test: every row is scored once)."""
    spec = SETS[name]
    root = shared_dataset(spec["folder"])
    frame = pd.read_csv(root / "labels.csv", dtype={"patient_id": str})
    clusters = None
    if name == "knee":
        frame = frame[frame["label_conflict"] != 1].copy()
        frame["sex"] = frame["gender"]
        clusters = {img: str(g) for img, g in zip(frame["image"], frame["dup_group"]) if isinstance(g, str) and g}
    elif name == "bone_age":
        frame["sex"] = frame["male"]
    keep = ["image", "patient_id", spec["target"], *spec["covariates"], "orig_width", "orig_height"]
    manifest = Manifest(frame[keep].reset_index(drop=True), root)
    folded = assign_folds(manifest, 5, seed=0, stratify=spec["target"], clusters=clusters)
    path = work / f"{name}_folds.csv"
    folded.write(path)
    return path


# --------------------------------------------------------------------------- classic approaches
def linear_cv(table: pd.DataFrame, columns: list[str], categorical: list[str], spec: dict, out: Path) -> pd.DataFrame:
    """Out-of-fold predictions of the ``linear`` model (penalty chosen in nested grouped folds)."""
    from osteolens.training.classic_cv import ClassicCVConfig, run_classic_cv

    config = ClassicCVConfig(
        target=spec["target"], model="linear", task=spec["task"], search="grid", positive=spec["positive"],
        numeric=columns, categorical=categorical, permutation_repeats=0, report=False,
    )
    return run_classic_cv(table, config, run_dir=out).oof


def feature_table(manifest: Manifest, families: list[dict], work: Path, name: str, **extraction) -> tuple[pd.DataFrame, list[str]]:
    from osteolens.features.extract import ExtractionConfig, extract_features

    result = extract_features(manifest, ExtractionConfig(families=families, roi="none", **extraction))
    if result.failures:
        print(f"{name}: {len(result.failures)} image(s) failed: {result.failures[:3]}")
    return result.table, list(result.feature_columns)


def stacked(probe: pd.DataFrame, frame: pd.DataFrame, spec: dict, out: Path) -> pd.DataFrame:
    """(f) image + covariates: the probe's out-of-fold score as one more input beside the covariates.

    The probe's scores are themselves out of fold, so the second-level model (fitted on the
    other folds) never sees a score that was fitted on its own test rows.
    """
    score = probe["y_pred"] if spec["task"] == "regression" else np.log(probe["prob"].clip(1e-6, 1 - 1e-6) / (1 - probe["prob"].clip(1e-6, 1 - 1e-6)))
    table = frame.merge(pd.DataFrame({"image": probe["image"], "image_score": score.to_numpy()}), on="image")
    categorical = [c for c in spec["covariates"] if c == "sex"]
    numeric = ["image_score"] + [c for c in spec["covariates"] if c != "sex"]
    return linear_cv(table, numeric, categorical, spec, out)


# --------------------------------------------------------------------------- deep approaches
def recipe_run(name: str, manifest: Path, work: Path, label: str, overrides: dict[str, Any]) -> pd.DataFrame:
    from osteolens.training import TrainConfig, run_training

    data = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    data.update({"manifest": str(manifest), "out": str(work / "runs"), "name": f"{name}_{label}", "report": False,
                 "cache": str(work / "cache")})
    for key, value in overrides.items():
        if key.startswith("model."):
            data.setdefault("model", {})[key.split(".", 1)[1]] = value
        else:
            data[key] = value
    config = TrainConfig.from_dict(data)
    shutil.rmtree(config.run_dir, ignore_errors=True)
    result = run_training(config, quiet=True)
    oof = pd.read_csv(result.run_dir / "oof_predictions.csv")
    oof["image"] = [str(Path(p).resolve()) for p in oof["image"]]
    return oof


# --------------------------------------------------------------------------- scoring
def summary(oof: pd.DataFrame, spec: dict) -> dict[str, Any]:
    from osteolens.evaluation import evaluate

    result = evaluate(oof, task=spec["task"], positive=spec["positive"], n_bootstrap=1000, seed=0, audit=False)
    metric = result.metrics[spec["metric"]]
    ci = metric.get("delong_ci") or [metric["ci_low"], metric["ci_high"]]
    return {"value": metric["value"], "ci_low": ci[0], "ci_high": ci[1], "n": result.n_images}


def paired(a: pd.DataFrame, b: pd.DataFrame, spec: dict) -> dict[str, Any]:
    from osteolens.evaluation.compare import compare

    keys = sorted(set(a["image"]) & set(b["image"]))
    result = compare(a[a["image"].isin(keys)], b[b["image"].isin(keys)], on="image", positive=spec["positive"],
                     n_bootstrap=2000, seed=0)
    return {"difference": result.difference, "ci_low": result.ci_low, "ci_high": result.ci_high, "p": result.p,
            "method": result.method}


def _absolute(frame: pd.DataFrame, manifest: Manifest) -> pd.DataFrame:
    frame = frame.copy()
    frame["image"] = [str(Path(manifest.resolve(p)).resolve()) for p in frame["image"]]
    return frame


def run_set(name: str, work: Path, skip: set[str]) -> dict[str, Any]:
    from osteolens.evaluation.audit import acquisition_table

    spec = SETS[name]
    manifest_path = folded_manifest(name, work)
    manifest = Manifest.read(manifest_path)
    frame = manifest.frame
    results: dict[str, dict[str, Any]] = {}
    oofs: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}

    def record(key: str, label: str, compute) -> None:
        started = time.perf_counter()
        oof = compute()
        seconds[key] = time.perf_counter() - started
        oofs[key] = _absolute(oof, manifest) if not str(oof["image"].iloc[0]).startswith("/") else oof
        results[key] = {"label": label, **summary(oofs[key], spec), "seconds": seconds[key]}
        print(f"{name} {key}: {results[key]}", flush=True)

    base = frame[["image", "patient_id", "fold", spec["target"], *spec["covariates"]]].copy()
    if spec["covariates"]:
        cat = [c for c in spec["covariates"] if c == "sex"]
        num = [c for c in spec["covariates"] if c != "sex"]
        record("a_covariates", f"(a) covariates only ({', '.join(spec['covariates'])})",
               lambda: linear_cv(base, num, cat, spec, work / f"{name}_a_cov"))

    def acquisition():
        table, _ = acquisition_table(manifest, frame["image"].tolist())
        cols = [c for c in ("height", "width", "aspect", "intensity_mean", "intensity_std", "intensity_p50",
                            "foreground_mean", "foreground_std", "dark_fraction") if c in table.columns]
        return linear_cv(pd.concat([base, table[cols]], axis=1), cols, [], spec, work / f"{name}_a_acq")

    record("a_acquisition", "(a) acquisition only (image size, brightness)", acquisition)
    if "b" not in skip:
        def radiomics():
            table, cols = feature_table(manifest, [RADIOMICS], work, name, max_size=256, equalise=False)
            return linear_cv(table, cols, [], spec, work / f"{name}_b")

        record("b_radiomics", "(b) radiomics + linear", radiomics)
    if "c" not in skip:
        record("c_random_cnn", "(c) CNN from random initialisation",
               lambda: recipe_run(name, manifest_path, work, "random", {"model.weights": None, "lp_epochs": 0}))
    if "d" not in skip:
        def probe():
            table, cols = feature_table(manifest, [{"name": "cnn", "params": {}}], work, name, equalise=False)
            return linear_cv(table, cols, [], spec, work / f"{name}_d")

        record("d_probe", "(d) embedding probe (frozen ImageNet efficientnet_lite0 + linear)", probe)
        if spec["covariates"]:
            record("f_probe_covariates", f"(f) probe score + {', '.join(spec['covariates'])} (stacked linear)",
                   lambda: stacked(oofs["d_probe"], _absolute(base, manifest), spec, work / f"{name}_f"))
    if "e" not in skip:
        record("e_recipe", f"(e) fine-tuning recipe (recipes/{name}.yaml)",
               lambda: recipe_run(name, manifest_path, work, "recipe", {}))
        if spec["fused_recipe"]:  # one fused fine-tuning run (knee): the CPU budget of a 2-core machine
            record("f_recipe_covariates", f"(e) + {', '.join(spec['covariates'])} fused by offset",
                   lambda: recipe_run(name, manifest_path, work, "recipe_cov", {"model.tabular": spec["covariates"]}))
    reference = "a_covariates" if "a_covariates" in oofs else "a_acquisition"
    for key in oofs:
        if key != reference:
            results[key]["versus"] = {"model": results[reference]["label"], **paired(oofs[key], oofs[reference], spec)}
    return {"n_images": len(frame), "n_patients": int(frame["patient_id"].nunique()), "reference": reference,
            "results": results}


# --------------------------------------------------------------------------- report
def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(all_results: dict[str, Any], args) -> str:
    import torch

    lines = [
        "## Real data: what the image adds (`benchmarks/real_data.py`)",
        "",
        f"Machine: {machine_description()}; torch threads {torch.get_num_threads()}.",
        "Command: `.venv/bin/python benchmarks/real_data.py" + (f" --sets {args.sets}" if args.sets != ",".join(SETS) else "")
        + (f" --skip {args.skip}" if args.skip else "") + "`. Five folds grouped by patient, every image scored once "
        "out of fold; intervals 95 %: DeLong for AUC, patient bootstrap (1000) for MAE; the difference is paired "
        "(same images) against the reference baseline: DeLong for AUC, paired patient bootstrap (2000) for MAE.",
        "",
    ]
    for name, block in all_results.items():
        spec = SETS[name]
        metric = "AUC osteoporosis vs rest" if spec["metric"] == "auc" else "MAE (months)"
        ref = block["results"][block["reference"]]["label"]
        lines += [f"### {name} ({block['n_images']} images, {block['n_patients']} patients)", "",
                  f"| approach | {metric} [95 % CI] | difference vs {ref} [95 % CI], p | time |", "|---|---|---|---|"]
        for key, r in block["results"].items():
            versus = r.get("versus")
            diff = "reference" if versus is None else (
                f"{versus['difference']:+.3f} [{_fmt(versus['ci_low'])}, {_fmt(versus['ci_high'])}]"
                + (f", p = {versus['p']:.3g}" if versus.get("p") is not None else ""))
            lines.append(f"| {r['label']} | {_fmt(r['value'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {diff} | "
                         f"{r['seconds'] / 60:.1f} min |")
        lines += ["", verdict(name, block), ""]
    return "\n".join(lines)


def verdict(name: str, block: dict[str, Any]) -> str:
    """One plain sentence: does any image approach beat the reference baseline in the paired test?"""
    spec = SETS[name]
    better = []
    for key, r in block["results"].items():
        v = r.get("versus")
        if v is None or v["ci_low"] is None:
            continue
        wins = v["ci_low"] > 0 if spec["metric"] == "auc" else v["ci_high"] < 0
        if wins:
            better.append(r["label"])
    ref = block["results"][block["reference"]]["label"]
    if not better:
        return f"**{name}: the image adds nothing measurable over {ref}** (no approach's paired interval excludes 0)."
    return f"**{name}: beats {ref} in the paired test:** " + "; ".join(better) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--skip", default="", help="approaches to skip, e.g. c,e (b: radiomics, c: random CNN, "
                                                   "d: probe, e: recipe)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "benchmark_real_data")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    names = [s for s in args.sets.split(",") if s]
    missing = [s for s in names if shared_dataset(SETS[s]["folder"]) is None]
    if missing:
        sys.exit(f"real data not found for {missing}: set $OSTEOLENS_DATA or place ../shared/data beside the checkout")
    args.work.mkdir(parents=True, exist_ok=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    all_results: dict[str, Any] = {}
    for name in names:  # the section is rewritten after each set, so a long run keeps what it has
        all_results[name] = run_set(name, args.work, skip)
        (args.work / "results.json").write_text(json.dumps(all_results, indent=2, default=float))
        text = markdown(all_results, args)
        print(text, flush=True)
        if not args.no_write:
            write_section("real_data", text)


if __name__ == "__main__":
    main()
