"""The JSON-lines runner reads and writes the resolved paths it checked, not the names as given."""

from __future__ import annotations

import json

from osteolens.serve.jsonl import handle_line


def _record_samples(predictor) -> list:
    """The samples ``predictor.predict`` is called with, appended as they come."""
    seen = []
    real = predictor.predict

    def predict(sample, **kwargs):
        seen.append(sample)
        return real(sample, **kwargs)

    predictor.predict = predict
    return seen


def test_a_symlink_inside_the_root_is_read_through_its_resolved_target(make_predictor, png_bytes, tmp_path):
    root = tmp_path / "allowed"
    (root / "in" / "deep").mkdir(parents=True)
    target = root / "in" / "deep" / "pano.png"
    target.write_bytes(png_bytes)
    link = root / "in" / "link.png"
    link.symlink_to(target)
    (root / "out-real").mkdir()
    (root / "out").symlink_to(root / "out-real")
    predictor = make_predictor(backend="torch")
    seen = _record_samples(predictor)
    record = handle_line(json.dumps({"img_path": str(link), "destination_path": str(root / "out")}), predictor,
                         [root.resolve()])
    assert record["result"] == "ok", record["error"]
    assert seen == [target.resolve()]  # not the link's name
    assert record["image"] == str(link)  # the record reports the path as requested
    assert record["overlay_img_path"].startswith(str((root / "out-real").resolve()) + "/link_")


def test_multi_view_paths_are_resolved_too(make_predictor, png_bytes, tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "ap.png").write_bytes(png_bytes)
    (root / "lat.png").write_bytes(png_bytes)
    (root / "ap-link.png").symlink_to(root / "ap.png")
    predictor = make_predictor(views=["AP", "LAT"], backend="torch", name="b2v")
    seen = _record_samples(predictor)
    line = {"img_path": {"AP": str(root / "ap-link.png"), "LAT": str(root / "sub" / ".." / "lat.png")},
            "destination_path": str(root / "out")}
    (root / "sub").mkdir()
    record = handle_line(json.dumps(line), predictor, [root.resolve()])
    assert record["result"] == "ok", record["error"]
    assert seen == [{"AP": (root / "ap.png").resolve(), "LAT": (root / "lat.png").resolve()}]
