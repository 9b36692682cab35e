"""examples/michaelis_menten.py: the fit matches R's nls and scipy; the plot lands in --out."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def test_michaelis_menten_example(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    out = tmp_path / "figures"
    done = subprocess.run([sys.executable, str(REPOSITORY / "examples" / "michaelis_menten.py"),
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "michaelis_menten.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.glob("*.png")) == []        # nothing outside --out
    vmax = re.search(r"Vmax =\s+([\d.]+) \+/- ([\d.]+)", done.stdout)
    assert abs(float(vmax.group(1)) - 212.7) < 0.05 and abs(float(vmax.group(2)) - 6.947) < 0.0005
    scipy_line = re.search(r"scipy curve_fit: Vmax = ([\d.]+)", done.stdout)
    assert abs(float(scipy_line.group(1)) - float(vmax.group(1))) < 1e-3


def test_help_says_where_outputs_go():
    done = subprocess.run([sys.executable, str(REPOSITORY / "examples" / "michaelis_menten.py"), "--help"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPOSITORY)))
    assert done.returncode == 0 and "--out" in done.stdout and "michaelis_menten.png" in done.stdout
