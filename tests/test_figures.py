"""`seaice figures`: PDF, PNG and LaTeX from run folders and benchmark JSON only."""

import json

import matplotlib.image
import numpy as np
import pytest

from benchmarks import bench_compare
from seaice_lib import cli, figures, schema
from seaice_lib.engine.evaluation import Evaluation


def _evaluation(seed: int) -> Evaluation:
    rng = np.random.default_rng(seed)
    confusion = {}
    for chart in schema.CHARTS:
        n = schema.N_CLASSES[chart]
        confusion[chart] = (np.diag(rng.integers(50, 500, n)) + rng.integers(0, 20, (n, n))).astype(np.int64)
    return Evaluation(confusion, 3, {"model": "unet"})


@pytest.fixture
def inputs(tmp_path):
    runs = tmp_path / "runs"
    for i, name in enumerate(["unet", "tsvit_v3"]):
        (runs / name).mkdir(parents=True)
        _evaluation(i).to_json(runs / name / "evaluation.json")
    results = {(run, f, s): {"scores": {m: 60.0 + i + f + s for m in bench_compare.METRICS},
                             "train_cpu_s": 1.0, "steps": 5}
               for i, run in enumerate(["tsvit_v1", "tsvit_v2"]) for f in (0, 1) for s in (1, 2)}
    bench = tmp_path / "bench"
    bench.mkdir()
    doc = {"summary": bench_compare.summarise(results),
           "results": [{"run": r, "fold": f, "seed": s, **res} for (r, f, s), res in results.items()]}
    (bench / "compare.json").write_text(json.dumps(doc))
    return runs, bench


def test_every_figure_as_pdf_and_png_and_tables_in_booktabs(inputs, tmp_path):
    runs, bench = inputs
    out = tmp_path / "figures"
    assert cli.main(["figures", str(runs), str(out), "--bench", str(bench)]) == 0
    names = {p.name for p in out.iterdir()}
    for stem in ("fig_per_class_f1", "fig_class_support", "fig_confusion_unet", "fig_confusion_tsvit_v3",
                 "fig_model_comparison"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names, stem
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        image = matplotlib.image.imread(out / f"{stem}.png")
        assert image.shape[1] > 1000 and image[..., :3].std() > 0.05  # 300 dpi, something drawn
    for stem in ("table_runs", "table_model_comparison", "table_paired_differences"):
        tex = (out / f"{stem}.tex").read_text()
        assert "\\toprule" in tex and "\\bottomrule" in tex and f"tab:{stem}" in tex
    assert "tsvit_v2 - tsvit_v1" in (out / "table_paired_differences.csv").read_text()
    again = tmp_path / "again"
    figures.make_figures(runs, again, bench)
    assert {p.name for p in again.iterdir()} == names  # deterministic names


def test_nothing_to_draw_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", str(tmp_path / "empty"), str(tmp_path / "out"), "--bench", str(tmp_path)])
    assert exit_.value.code == 2 and "nothing to draw" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["figures", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert exit_.value.code == 2
