"""Rate fitting and the resumable results store of the labs."""

import numpy as np
import pytest

from labs.fitting import fit_slope, select_points, slope_ratio
from labs.store import ResultStore


def test_exact_power_law_gives_exact_slope_and_tight_interval():
    n = np.array([100, 200, 400, 800, 1600.0])
    fit = fit_slope(n, 3.0 * n**-1.5)
    assert fit.slope == pytest.approx(-1.5, abs=1e-12)
    assert fit.slope_ci[0] == pytest.approx(-1.5, abs=1e-9) and fit.slope_ci[1] == pytest.approx(-1.5, abs=1e-9)


def test_noisy_power_law_interval_covers_true_slope_at_nominal_rate():
    # Points measured with a known standard error: the 95% interval should cover the true slope
    # about 95% of the time.  With 200 replicates the coverage's SE is 1.5%, so require >= 88%.
    rng = np.random.default_rng(0)
    n = np.repeat(np.array([50, 100, 200, 400, 800, 1600.0]), 2)
    true = 0.5 * n**-1.0
    covered = 0
    for rep in range(200):
        sd = 0.05
        v = true * np.exp(sd * rng.standard_normal(n.size))
        fit = fit_slope(n, v, se=sd * v, n_boot=400, seed=rep)
        covered += fit.slope_ci[0] <= -1.0 <= fit.slope_ci[1]
    assert covered / 200 >= 0.88


def test_select_points_drops_noise_floor_and_plateau():
    n = np.array([10, 20, 40, 80, 160, 320.0])
    v = np.array([1.0, 0.25, 0.0625, 0.0156, 0.0155, 0.0154])  # slope -2 then flat
    mask = select_points(n, v)
    assert mask.tolist() == [True, True, True, True, False, False]
    lo = v * 0.9
    mask = select_points(n, v, ci_low=lo, floor_high=np.full(6, 0.05))
    assert mask.tolist() == [True, True, True, False, False, False]


def test_select_points_drops_non_finite_and_non_positive():
    n = np.array([10, 20, 40, 80.0])
    v = np.array([1.0, np.nan, -0.1, 0.1])
    assert select_points(n, v).tolist() == [True, False, False, True]


def test_too_few_points_gives_no_fit_with_a_reason():
    fit = fit_slope([10, 20], [1.0, 0.5])
    assert fit.slope is None and "resolved point" in fit.reason
    assert slope_ratio(fit, fit) == (None, (None, None))


def test_slope_ratio_interval():
    n = np.array([100, 200, 400, 800, 1600.0])
    rng = np.random.default_rng(1)
    a = fit_slope(n, n**-2.0 * np.exp(0.02 * rng.standard_normal(5)), se=0.02 * n**-2.0, seed=1)
    b = fit_slope(n, n**-1.0 * np.exp(0.02 * rng.standard_normal(5)), se=0.02 * n**-1.0, seed=2)
    ratio, (lo, hi) = slope_ratio(a, b)
    assert ratio == pytest.approx(a.slope / b.slope)
    assert lo < ratio < hi and lo > 1.5 and hi < 2.5


def test_store_appends_resumes_and_drops_partial_line(tmp_path):
    cols = ["cell", "value"]
    store = ResultStore(tmp_path / "r.csv", cols)
    store.append([{"cell": "a", "value": 1}, {"cell": "a", "value": 2}])
    store.append([{"cell": "b", "value": 3}])
    with open(tmp_path / "r.csv", "a") as f:
        f.write("c,4")  # an interrupted write: no newline
    assert store.done_cells() == {"a", "b"}
    assert [r["value"] for r in store.read()] == ["1", "2", "3"]
    store.append([{"cell": "c", "value": 5}])
    assert [r["value"] for r in store.read()] == ["1", "2", "3", "5"]


def test_store_refuses_a_file_with_other_columns(tmp_path):
    (tmp_path / "r.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        ResultStore(tmp_path / "r.csv", ["cell", "value"]).read()
