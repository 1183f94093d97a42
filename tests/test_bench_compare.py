"""The model-comparison benchmark's folds, summary arithmetic and figure (benchmarks/bench_compare.py)."""

import matplotlib.image
import numpy as np
import pytest

from benchmarks import bench_compare
from seaice_lib import synthetic
from seaice_lib.figures import scores


def test_folds_hold_out_freezing_regions_paired_first_with_last():
    folds = bench_compare.freezing_folds(synthetic.REGION_CATALOGUE[:8])
    assert folds == [("CentralEast", "SGRDIEA"), ("SGRDIFOXE", "Qaanaaq")]
    with pytest.raises(ValueError, match="freeze-up"):
        bench_compare.freezing_folds(synthetic.REGION_CATALOGUE[:4])


def _result(combined: float) -> dict:
    scores = {m: combined for m in bench_compare.METRICS}
    return {"scores": scores, "train_cpu_s": 10.0, "steps": 5}


def test_summary_means_spreads_and_paired_differences_worked_by_hand():
    v1 = {(0, 1): 60.0, (0, 2): 62.0, (1, 1): 70.0, (1, 2): 72.0}
    v2 = {(0, 1): 61.0, (0, 2): 61.0, (1, 1): 74.0, (1, 2): 75.0}
    results = {("tsvit_v1", f, s): _result(v) for (f, s), v in v1.items()}
    results |= {("tsvit_v2", f, s): _result(v) for (f, s), v in v2.items()}
    summary = bench_compare.summarise(results)
    assert list(summary["runs"]) == ["tsvit_v1", "tsvit_v2"]
    assert summary["runs"]["tsvit_v1"]["combined"] == {"mean": 66.0, "std": 5.89, "min": 60.0, "max": 72.0, "n": 4}
    (time,) = [d for d in summary["differences"] if d["question"] == "time helps TSViT"]
    # v2 - v1 per cell: +1, -1, +4, +3: mean 1.75, sample sd sqrt(((-.75)^2+(-2.75)^2+2.25^2+1.25^2)/3)
    assert time["combined"]["values"] == [1.0, -1.0, 4.0, 3.0]
    assert time["combined"]["mean"] == 1.75 and time["combined"]["positive"] == 3
    assert time["combined"]["std"] == pytest.approx(np.sqrt((0.5625 + 7.5625 + 5.0625 + 1.5625) / 3), abs=0.005)
    assert len(summary["differences"]) == 1  # the others lack their runs


def test_comparison_figure_is_written_and_not_blank(tmp_path):
    results = {(run, f, s): _result(60 + 5 * i + f + s) for i, run in enumerate(["unet_sar", "tsvit_v1", "floor_sar"])
               for f in (0, 1) for s in (1, 2)}
    doc = {"summary": bench_compare.summarise(results),
           "results": [{"run": r, "fold": f, "seed": s, **res} for (r, f, s), res in results.items()]}
    pdf, png = scores.comparison_figure(doc, tmp_path, "compare")
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 50 and image[..., :3].std() > 0.05  # something drawn on white
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000
