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


def test_readme_matrix_gradient_comment_is_what_the_call_returns():
    import sympy as sp
    import symdiff as sd

    text = README.read_text()
    comment = re.search(r"^obj\.gradient\(\)\[0\]\s+# dL/dW1 = (.*)$", text, flags=re.M).group(1)
    layers = re.search(r"^obj\.layers\s+# (.*)$", text, flags=re.M).group(1)
    M = sp.MatrixSymbol
    x, y = M("x", 64, 1), M("y", 10, 1)
    W1, b1, W2, b2 = M("W1", 32, 64), M("b1", 32, 1), M("W2", 10, 32), M("b2", 10, 1)
    z = W2 * (W1 * x + b1).applyfunc(sp.tanh) + b2
    obj = sd.Objective(sd.losses.softmax_cross_entropy(z, y), params=[W1, b1, W2, b2], data=[x, y])
    assert comment == str(obj.gradient()[0])
    assert layers == str(obj.layers)
