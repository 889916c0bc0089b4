"""Train the landmark detector from a YAML config: grouped split, QC, augmentation, checkpoints, bundle.

Example ``landmarks.yaml`` (paths relative to the file; see ``recipes/aasce_landmarks.yaml``)::

    landmarks: ../../shared/data/spine_landmarks_aasce/landmarks.csv
    labels: ../../shared/data/spine_landmarks_aasce/labels.csv   # patient_key, qc_flags (optional)
    images: null              # folder of the radiographs; default: beside the landmark table
    view: AP                  # the radiographs' view (AP or lateral), stored in the bundle for morphometry
    qc: repair                # repair | drop: what to do with training spines whose annotation is broken
    val_fraction: 0.2         # patients held out for validation (grouped by patient_key)
    model: {backbone: tf_efficientnet_lite0, weights: imagenet, out_indices: [1, 2, 3], head_channels: 64}
    input_size: [512, 256]    # H, W of the network input
    sigma: 1.5                # heatmap Gaussian, output cells
    epochs: 12
    batch_size: 8
    lr: 0.002
    weight_decay: 0.0001
    warmup_epochs: 1
    ema_decay: 0.995          # EMA of the weights in the bundle (null: the last step's weights)
    augment: {rotate_deg: 8, scale: 0.1, translate: 0.05, hflip: 0.5, brightness: 0.1, contrast: 0.2, gamma: 0.3}
    seed: 0
    threads: null             # torch CPU threads (null: torch's default)
    accelerator: auto         # Lightning Fabric accelerator
    out: runs/aasce_landmarks

The run directory gets ``config.yaml`` (resolved), ``environment.json``, ``split.csv``
(image, patient, set, qc), ``qc.json``, ``checkpoint/`` (after every epoch, the same
safetensors + JSON checkpoints as ``osteolens train``: a killed run resumes with ``resume=True``),
``history.json``, ``val_predictions.csv`` and ``val_evaluation.json`` + ``report/report.html``
(the final weights on the held-out patients, beside a mean-shape baseline), and ``bundle/``.

No epoch is chosen on the validation patients: the bundle holds the weights at the end of the
last epoch, with ``ema_decay`` their exponential moving average (timm's ``ModelEmaV3``,
updated after every step with timm's warm-up ``min(ema_decay, 1 - t^(-2/3))``, batch-norm
buffers copied), so the validation figures are those of a detector the validation images
never shaped. The per-epoch validation MRE in ``history.json`` is a monitor only.

QC of the training spines: :func:`osteolens.morphometry.check_annotations` plus the labels'
``qc_flags``. ``repair`` re-sorts the vertebrae from cranial to caudal and reorders each
vertebra's corners TL, TR, BL, BR (:func:`osteolens.landmarks.decode.order_corners`), then
checks again; a spine still broken (or with a point outside the image) is dropped. ``drop``
drops every flagged spine. Validation keeps every held-out image with its original annotation;
flagged ones are evaluated apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from osteolens.errors import AnnotationError, ConfigError
from osteolens.landmarks.augment import AugmentSettings
from osteolens.landmarks.decode import PositionPrior
from osteolens.landmarks.runtime import TorchMaps, export_landmark_onnx, predict_prepared

QC_POLICIES = ("repair", "drop")


@dataclass
class LandmarkConfig:
    """A landmark training run (see the module docstring for each key)."""

    landmarks: str
    labels: str | None = None
    images: str | None = None
    view: str = "AP"
    qc: str = "repair"
    val_fraction: float = 0.2
    model: dict[str, Any] = field(default_factory=lambda: {"backbone": "tf_efficientnet_lite0", "weights": "imagenet"})
    input_size: list[int] = field(default_factory=lambda: [512, 256])
    sigma: float = 1.5
    epochs: int = 12
    batch_size: int = 8
    lr: float = 0.002
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    ema_decay: float | None = None
    augment: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    threads: int | None = None
    accelerator: str = "auto"
    max_images: int | None = None
    out: str = "runs/landmarks"

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> LandmarkConfig:
        """Read a YAML config; relative paths are resolved against its folder.

        Raises:
            ConfigError: unreadable file, unknown key, or a bad value.
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(path, f"cannot read the YAML config ({exc}).", "give a readable YAML file.") from exc
        if not isinstance(raw, dict):
            raise ConfigError(path, "the config must be a mapping of keys to values.", "see recipes/aasce_landmarks.yaml.")
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(path, f"unknown key(s) {unknown}.", f"use only {sorted(names)}.")
        if "landmarks" not in raw:
            raise ConfigError(path, "no 'landmarks' table given.", "add landmarks: PATH (CSV: image, vertebra, corner, x, y).")
        for key in ("landmarks", "labels", "images", "out"):
            if raw.get(key) is not None:
                raw[key] = str((path.parent / str(raw[key])).resolve())
        config = cls(**raw)
        config.validate(path)
        return config

    def validate(self, where: str | Path | None = None) -> None:
        """Check values.

        Raises:
            ConfigError: naming the key and the fix.
        """
        from osteolens.morphometry.vertebra import normalise_view

        try:
            self.view = normalise_view(self.view)
        except AnnotationError as exc:
            raise ConfigError(where, f"view is {self.view!r}.", "use AP or lateral.") from exc
        if self.qc not in QC_POLICIES:
            raise ConfigError(where, f"qc is {self.qc!r}.", f"use one of {', '.join(QC_POLICIES)}.")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError(where, f"val_fraction is {self.val_fraction}.", "give a fraction between 0 and 1.")
        if len(self.input_size) != 2 or min(self.input_size) < 32 or any(int(v) % 32 for v in self.input_size):
            raise ConfigError(where, f"input_size is {self.input_size}.", "give [H, W], each a multiple of 32.")
        if self.ema_decay is not None and not 0.0 <= float(self.ema_decay) < 1.0:
            raise ConfigError(where, f"ema_decay is {self.ema_decay}.", "give a decay in [0, 1), e.g. 0.995, or null.")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ConfigError(where, "epochs and batch_size must be at least 1.", "set positive values.")
        unknown = sorted(set(self.augment) - {f.name for f in dataclasses.fields(AugmentSettings)})
        if unknown:
            raise ConfigError(where, f"unknown augment key(s) {unknown}.",
                              f"use {[f.name for f in dataclasses.fields(AugmentSettings)]}.")
        unknown = sorted(set(self.model) - {"backbone", "weights", "out_indices", "head_channels"})
        if unknown:
            raise ConfigError(where, f"unknown model key(s) {unknown}.", "use backbone, weights, out_indices, head_channels.")


@dataclass
class Sample:
    """One training or validation spine."""

    image: str
    patient: str
    path: Path
    corners: np.ndarray  # (n, 4, 2) original pixels
    shape: tuple[int, int]
    qc: str = ""


def repair(corners: np.ndarray) -> np.ndarray:
    """Vertebrae sorted cranial first by centre height, each vertebra's corners reordered TL, TR, BL, BR."""
    from osteolens.landmarks.decode import order_corners

    quads = np.asarray(corners, dtype=float)
    return order_corners(quads[np.argsort(quads.mean(axis=1)[:, 1], kind="stable")])


def load_samples(config: LandmarkConfig) -> tuple[list[Sample], list[str], dict[str, dict[str, str]]]:
    """Read the tables: the samples (original annotations), the vertebra names, and per image
    ``{"flags": ..., "repaired": ...}`` for images whose annotation is broken.

    Raises:
        ConfigError: no image found, or the spines do not share the same vertebrae.
    """
    from osteolens.landmarks.evaluate import patient_of
    from osteolens.morphometry import check_annotations, read_landmarks
    from osteolens.morphometry.inputs import read_image_header

    spines = read_landmarks(config.landmarks, config.images)
    facts: dict[str, dict[str, Any]] = {}
    if config.labels:
        for record in pd.read_csv(config.labels).to_dict(orient="records"):
            facts[Path(str(record["image"])).name] = record
    names = spines[0].names if spines else []
    samples, broken = [], {}
    for spine in spines:
        if spine.image_path is None:
            continue
        if spine.names != names:
            raise ConfigError(config.landmarks, f"image {spine.key} has vertebrae {spine.names}, the first image {names}.",
                              "give every image the same levels in the same order.")
        fact = facts.get(Path(spine.key).name, {})
        patient = patient_of(fact.get("patient_key"), spine.key)
        shape = read_image_header(spine.image_path)[0]
        flags = sorted({p.code for p in check_annotations(spine.corners, names, shape)}
                       | (set(fact["qc_flags"].split(";")) - {""} if isinstance(fact.get("qc_flags"), str) else set()))
        if flags:
            fixed = repair(spine.corners)
            ok = config.qc == "repair" and not check_annotations(fixed, names, shape)
            broken[spine.key] = {"flags": ";".join(flags), "training": "repaired" if ok else "dropped"}
        samples.append(Sample(spine.key, patient, spine.image_path, spine.corners, shape, ";".join(flags)))
        if config.max_images and len(samples) >= config.max_images:
            break
    if not samples:
        raise ConfigError(config.landmarks, "no image of the landmark table was found.",
                          "set 'images' to the folder of the radiographs.")
    return samples, list(names), broken


def grouped_split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``, about ``fraction`` of the patients held out (no patient in both)."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = [s.patient for s in samples]
    train, val = next(GroupShuffleSplit(1, test_size=fraction, random_state=seed).split(groups, groups=groups))
    return sorted(int(i) for i in train), sorted(int(i) for i in val)


class LandmarkDataset:
    """Prepared images and corners (network-input pixels), augmented per epoch and index.

    Args:
        images: ``(h, w)`` images in [0, 1] at the input size.
        corners: their ``(n, 4, 2)`` corners in input pixels.
        stride, sigma: the targets' geometry.
        augment: settings, or None for no augmentation.
        seed: base seed; sample ``i`` of epoch ``e`` draws from ``(seed, e, i)``.
    """

    def __init__(self, images: list[np.ndarray], corners: list[np.ndarray], stride: int, sigma: float,
                 augment: AugmentSettings | None, seed: int = 0) -> None:
        self.images, self.corners = images, corners
        self.stride, self.sigma, self.augment, self.seed = stride, sigma, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        from osteolens.landmarks.augment import jitter_intensity, random_matrix, warp
        from osteolens.landmarks.preprocess import normalise
        from osteolens.landmarks.targets import encode

        image, corners = self.images[i], self.corners[i]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            matrix, flip = random_matrix(rng, image.shape, self.augment)
            image, corners = warp(image, corners, matrix, flip)
            image = jitter_intensity(image, rng, self.augment)
        h, w = image.shape
        targets = encode(corners, (h // self.stride, w // self.stride), self.stride, self.sigma)
        return {"image": torch.from_numpy(normalise(image))[None], "heatmap": torch.from_numpy(targets.heatmap),
                "index": torch.from_numpy(targets.index), "mask": torch.from_numpy(targets.mask),
                "offset": torch.from_numpy(targets.offset), "corners": torch.from_numpy(targets.corners)}


def _prepare(samples: list[Sample], size: tuple[int, int]) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    from osteolens.io import read_radiograph
    from osteolens.landmarks.preprocess import resize_stretch

    images, scales = [], []
    for sample in samples:
        image, scale = resize_stretch(read_radiograph(sample.path).pixels, size)
        images.append(image)
        scales.append(scale)
    return images, scales


def evaluate_held_out(samples: list[Sample], pred: dict[str, np.ndarray], n_bootstrap: int = 1000,
                      levels_uncertain: dict[str, bool] | None = None) -> Any:
    """:func:`osteolens.landmarks.evaluate.evaluate_spines` of predicted corners (by image) on held-out
    samples: their own annotations as truth, image heights for the Cobb rule, patients as bootstrap
    groups, QC-flagged truth apart; ``levels_uncertain``: the detector's level flag by image."""
    from osteolens.landmarks.evaluate import evaluate_spines

    return evaluate_spines(pred, {s.image: s.corners for s in samples}, heights={s.image: float(s.shape[0]) for s in samples},
                           groups={s.image: s.patient for s in samples}, flagged={s.image: s.qc for s in samples if s.qc},
                           n_bootstrap=n_bootstrap, levels_uncertain=levels_uncertain)


def train(config: LandmarkConfig, resume: bool = False, progress: Any = print) -> Path:
    """Run the training described by ``config``; returns the run directory.

    Raises:
        ConfigError: bad data or a run directory that holds another run (without ``resume``).
    """
    import torch
    from lightning.fabric import seed_everything

    from osteolens.landmarks.bundle import write_landmark_bundle
    from osteolens.landmarks.evaluate import mean_shape, place_mean_shape, write_report
    from osteolens.landmarks.model import LandmarkNet, landmark_loss
    from osteolens.landmarks.preprocess import to_network
    from osteolens.landmarks.predict import SpinePrediction, predictions_table
    from osteolens.training.checkpoint import load_checkpoint, save_checkpoint, state_tensors
    from osteolens.training.loop import _lr_lambda, make_fabric
    from osteolens.training.rundir import environment, write_json

    started = time.perf_counter()
    run = Path(config.out)
    checkpoint = run / "checkpoint"
    if (checkpoint / "state.json").exists() and not resume:
        raise ConfigError(run, "holds a started run.", "pass --resume to continue it, or choose another 'out'.")
    checkpoint.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    seed_everything(config.seed, verbose=False)
    (run / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
    samples, vertebrae, broken = load_samples(config)
    train_idx, val_idx = grouped_split(samples, config.val_fraction, config.seed)
    usable = [i for i in train_idx if broken.get(samples[i].image, {}).get("training", "clean") != "dropped"]
    pd.DataFrame([{"image": s.image, "patient": s.patient, "set": "val" if i in set(val_idx) else "train",
                   "qc": s.qc, "training": broken.get(s.image, {}).get("training", "")}
                  for i, s in enumerate(samples)]).to_csv(run / "split.csv", index=False)
    write_json(run / "qc.json", {"policy": config.qc, "broken": broken})
    progress(f"{len(samples)} images, {len(set(s.patient for s in samples))} patients: "
             f"train {len(usable)} (of {len(train_idx)}; {len(train_idx) - len(usable)} dropped by QC), val {len(val_idx)}")
    size = (int(config.input_size[0]), int(config.input_size[1]))
    images, scales = _prepare(samples, size)
    prior = PositionPrior.fit([repair(samples[i].corners) for i in usable], [samples[i].shape[0] for i in usable])
    model_params = dict(config.model)
    net = LandmarkNet(model_params.get("backbone", "tf_efficientnet_lite0"), model_params.get("out_indices", (1, 2, 3)),
                      int(model_params.get("head_channels", 64)), model_params.get("weights"))
    train_corners = [to_network(repair(samples[i].corners) if samples[i].image in broken else samples[i].corners,
                                scales[i]) for i in usable]
    dataset = LandmarkDataset([images[i] for i in usable], train_corners, net.stride, config.sigma,
                              AugmentSettings(**config.augment), config.seed)
    fabric = make_fabric(accelerator=config.accelerator)
    write_json(run / "environment.json", environment(str(fabric.device)))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = math.ceil(len(dataset) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup_epochs * steps, config.epochs * steps))
    state = load_checkpoint(checkpoint) if resume else None
    history: list[dict[str, Any]] = []
    first_epoch = 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, first_epoch = state["history"], state["epoch"] + 1
        progress(f"resumed after epoch {state['epoch']}")
    model, optimizer = fabric.setup(net, optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    val_samples = [samples[i] for i in val_idx]
    sound_val = [i for i in val_idx if not samples[i].qc]  # the monitor uses sound annotations only
    ema = None
    if config.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(net, decay=float(config.ema_decay), use_warmup=True, exclude_buffers=True)
        if state is not None:
            ema.module.load_state_dict(state["best"])
    final = ema.module if ema is not None else net
    updates = int(state.get("updates", 0)) if state is not None else 0  # optimiser steps so far (the EMA's warm-up)
    for epoch in range(first_epoch, config.epochs):
        tick = time.perf_counter()
        dataset.epoch = epoch
        generator.manual_seed(config.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                                             drop_last=len(dataset) > config.batch_size)
        model.train()
        losses = []
        for batch in loader:
            batch = {k: fabric.to_device(v) for k, v in batch.items()}
            loss, _ = landmark_loss(model(batch["image"]), batch)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            optimizer.step()
            scheduler.step()
            updates += 1
            if ema is not None:
                ema.update(net, step=updates)
            losses.append(loss.item())
        detected = predict_prepared(TorchMaps(final, fabric.device), [images[i] for i in sound_val],
                                    [scales[i] for i in sound_val], len(vertebrae), config.batch_size, prior=prior)
        errors = [np.linalg.norm(d.corners - samples[i].corners, axis=2).mean()
                  for d, i in zip(detected, sound_val, strict=True)]
        mre = float(np.mean(errors)) if errors else float("nan")
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_mre_px": mre,
                        "seconds": time.perf_counter() - tick})
        save_checkpoint(checkpoint, model=net, best=state_tensors(final), optimizer=optimizer, scheduler=scheduler,
                        state={"epoch": epoch, "history": history, "updates": updates})
        progress(f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]['train_loss']:.3f}, "
                 f"val MRE {mre:.1f} px, {history[-1]['seconds']:.0f} s")
    write_json(run / "history.json", {"history": history})
    if ema is not None:
        net.load_state_dict(state_tensors(ema.module))
    net.cpu().eval()
    detected = predict_prepared(TorchMaps(net), [images[i] for i in val_idx], [scales[i] for i in val_idx],
                                len(vertebrae), config.batch_size, prior=prior)
    predictions_table([SpinePrediction(s.image, list(vertebrae), d, s.shape, 0.0)
                       for s, d in zip(val_samples, detected, strict=True)]).to_csv(run / "val_predictions.csv", index=False)
    pred = {s.image: d.corners for s, d in zip(val_samples, detected, strict=True)}
    truth = {s.image: s.corners for s in val_samples}
    metrics: dict[str, Any] = {}
    if val_samples:
        evaluation = evaluate_held_out(val_samples, pred, levels_uncertain={
            s.image: d.levels_uncertain for s, d in zip(val_samples, detected, strict=True)})
        shape_mean = mean_shape([repair(samples[i].corners) for i in usable], [samples[i].shape for i in usable])
        baseline = evaluate_held_out(val_samples, {s.image: place_mean_shape(shape_mean, s.shape) for s in val_samples})
        metrics = {"model": evaluation.summary, "model_flagged": evaluation.flagged,
                   "mean_shape_baseline": baseline.summary, "mean_shape_baseline_flagged": baseline.flagged}
        write_json(run / "val_evaluation.json", {**metrics, "per_image": evaluation.to_dict()["per_image"]})
        write_report(evaluation, run / "report", pred, truth, {s.image: s.path for s in val_samples},
                     {s.image: d.confidence for s, d in zip(val_samples, detected, strict=True)})
    summary = {"images": len(samples), "train_images": len(usable), "val_images": len(val_idx),
               "epochs": config.epochs, "final_val_mre_px": history[-1]["val_mre_px"] if history else None,
               "weights": f"EMA (decay {config.ema_decay})" if ema is not None else "last step", "seed": config.seed,
               "input_size": list(size), "seconds": round(time.perf_counter() - started, 1)}
    write_landmark_bundle(run / "bundle", net, size, vertebrae, view=config.view, position_prior=prior, training_summary=summary,
                          metrics=json.loads(json.dumps(metrics, default=float)), onnx_model=export_landmark_onnx(net, size))
    progress(f"bundle {run / 'bundle'}; validation: {json.dumps(metrics.get('model', {}), default=float)[:300]}")
    return run
