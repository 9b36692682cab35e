"""Every script in examples/ runs to completion in fast mode (SYMDIFF_FAST=1), so none can rot."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPOSITORY / "examples").glob("*.py"))


def test_examples_are_found():
    assert {"computational_graph.py", "linear_regression.py"} <= {path.name for path in EXAMPLES}


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs_in_fast_mode(script, tmp_path):
    environment = dict(os.environ, SYMDIFF_FAST="1", MPLBACKEND="Agg")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, (
        f"{script.name} exited with {completed.returncode}\n"
        f"--- stdout ---\n{completed.stdout[-3000:]}\n--- stderr ---\n{completed.stderr[-3000:]}"
    )
    assert completed.stdout.strip(), f"{script.name} printed nothing"


def test_newton_vs_gradient_descent_reports_iterations_and_writes_its_figure(tmp_path):
    script = REPOSITORY / "examples" / "newton_vs_gradient_descent.py"
    environment = dict(os.environ, SYMDIFF_FAST="1", MPLBACKEND="Agg")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    completed = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "figs")],
                               cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {line[:18].strip(): line[18:].split() for line in completed.stdout.splitlines()}
    assert int(rows["Newton"][0]) <= 10 and int(rows["L-BFGS"][0]) <= 200
    assert rows["gradient descent"][0] == ">"  # not within the fast mode's 400 steps
    assert (tmp_path / "figs" / "newton_vs_gradient_descent.png").stat().st_size > 10_000
    helped = subprocess.run([sys.executable, str(script), "--help"], env=environment,
                            capture_output=True, text=True, timeout=60)
    assert "newton_vs_gradient_descent.png" in helped.stdout and "--out" in helped.stdout
