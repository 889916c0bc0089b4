"""The JSON-lines runner: the dental seed's protocol, allowed roots, and a loop that never dies."""

from __future__ import annotations

import io
import json
import os

from osteolens.inference.report import RECORD_KEYS
from osteolens.serve.jsonl import handle_line, run_jsonl


def _setup(tmp_path, png_bytes):
    root = tmp_path / "allowed"
    (root / "in").mkdir(parents=True)
    image = root / "in" / "pano.png"
    image.write_bytes(png_bytes)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes)
    return root, image, outside


def test_protocol_answers_every_line_in_order(make_predictor, png_bytes, tmp_path):
    root, image, outside = _setup(tmp_path, png_bytes)
    out = root / "out"
    (root / "in" / "escape").symlink_to(tmp_path)  # a link inside the root pointing outside it
    lines = [
        json.dumps({"img_path": str(image), "destination_path": str(out)}),
        "{not json",
        "",
        json.dumps({"img_path": str(outside), "destination_path": str(out)}),
        json.dumps({"img_path": str(root / "in" / ".." / ".." / "secret.png"), "destination_path": str(out)}),
        json.dumps({"img_path": str(root / "in" / "escape" / "secret.png"), "destination_path": str(out)}),
        json.dumps({"img_path": str(image), "destination_path": str(tmp_path / "elsewhere")}),
        json.dumps({"img_path": str(image)}),
        json.dumps(["a", "list"]),
        json.dumps({"img_path": str(root / "in" / "missing.png"), "destination_path": str(out)}),
        json.dumps({"img_path": str(image), "destination_path": str(out)}),
    ]
    stdout = io.StringIO()
    answered, failed = run_jsonl(make_predictor(backend="torch"), [root], io.StringIO("\n".join(lines) + "\n"), stdout)
    answers = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert (answered, failed) == (10, 8) and len(answers) == 10
    assert all(tuple(a) == RECORD_KEYS for a in answers)
    first, *bad, last = answers
    assert first["result"] == last["result"] == "ok"
    assert first["diagnosis"] in ("normal", "osteoporosis") and first["error"] is None
    for key in ("saliency_img_path", "overlay_img_path"):
        assert os.path.isfile(first[key]) and first[key].startswith(str(out))
    assert first["saliency_img_path"] != last["saliency_img_path"]  # time-stamped, never overwritten
    assert [a["result"] for a in bad] == ["fail"] * 8
    assert "not JSON" in bad[0]["error"]
    assert all("outside the allowed roots" in a["error"] for a in bad[1:5])
    assert "missing or empty field(s) destination_path" in bad[5]["error"]
    assert "JSON object" in bad[6]["error"]
    assert "file not found" in bad[7]["error"]
    assert not (tmp_path / "elsewhere").exists()


def test_unexpected_exceptions_become_fail_records(make_predictor, png_bytes, tmp_path):
    root, image, _ = _setup(tmp_path, png_bytes)
    predictor = make_predictor(backend="torch")

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    predictor.predict = explode
    record = handle_line(json.dumps({"img_path": str(image), "destination_path": str(root)}), predictor,
                         [root.resolve()])
    assert record["result"] == "fail" and record["error"] == "internal error (RuntimeError: boom)."


def test_covariates_in_the_request_line(make_predictor, png_bytes, tmp_path):
    root, image, _ = _setup(tmp_path, png_bytes)
    predictor = make_predictor(tabular=("sex", "age"), backend="torch")
    base = {"img_path": str(image), "destination_path": str(root / "out")}
    missing = handle_line(json.dumps(base), predictor, [root.resolve()])
    assert missing["result"] == "fail" and "covariate 'sex'" in missing["error"]
    ok = handle_line(json.dumps({**base, "sex": "F", "age": 70}), predictor, [root.resolve()])
    assert ok["result"] == "ok"


def test_a_multi_view_model_takes_one_file_per_view(make_predictor, png_bytes, tmp_path):
    root, image, outside = _setup(tmp_path, png_bytes)
    out = root / "out"
    predictor = make_predictor(views=["AP", "LAT"], backend="torch", name="b2v")
    ok = handle_line(json.dumps({"img_path": {"AP": str(image), "LAT": str(image)}, "destination_path": str(out)}),
                     predictor, [root.resolve()])
    assert ok["result"] == "ok" and ok["views"] == ["AP", "LAT"], ok["error"]
    assert os.path.isfile(ok["view_img_paths"]["LAT"]["overlay"])
    assert ok["overlay_img_path"] == ok["view_img_paths"]["AP"]["overlay"]
    escaped = handle_line(json.dumps({"img_path": {"AP": str(image), "LAT": str(outside)},
                                      "destination_path": str(out)}), predictor, [root.resolve()])
    assert escaped["result"] == "fail" and escaped["error"].startswith("img_path.LAT is outside the allowed roots")
    one = handle_line(json.dumps({"img_path": str(image), "destination_path": str(out)}), predictor, [root.resolve()])
    assert one["result"] == "fail" and "takes 2 views ['AP', 'LAT']" in one["error"]
    empty = handle_line(json.dumps({"img_path": {"AP": str(image), "LAT": ""}, "destination_path": str(out)}),
                        predictor, [root.resolve()])
    assert "missing or empty field(s) img_path.LAT" in empty["error"]
