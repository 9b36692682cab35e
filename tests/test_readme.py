"""The README's Python snippets run as written (in order, in one namespace)."""

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # our own documentation, not user input
    assert abs(namespace["result"].params_dict[namespace["w"]] - 3) < 0.1
    assert os.path.exists(tmp_path / "loss.png")


def test_readme_gradient_comment_is_what_the_call_returns():
    import sympy as sp
    import symdiff as sd

    comment = re.search(r"^obj\.gradient\(\)\s+# (\[.*?\])", README.read_text(), flags=re.M).group(1)
    w, b, x, y = sp.symbols("w b x y")
    obj = sd.Objective((w*x + b - y)**2, params=[w, b], data=[x, y])
    assert comment == str(obj.gradient())
