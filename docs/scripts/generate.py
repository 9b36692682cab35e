"""Generate every output, listing and figure the documentation shows.

The pages never carry pasted output. They include, through ``pymdownx.snippets``,

* the code of ``docs/scripts/snippets/NAME.py`` and the text it printed when this
  script ran it, ``docs/generated/NAME.txt`` (so the code shown is the code that ran);
* command-line sessions, ``docs/generated/cli_*.txt``: real ``symdiff`` runs;
* each example's output, ``docs/generated/examples/NAME.txt``, and its figures in
  ``docs/generated/figures/``;
* the LLVM IR and assembly of a real kernel, and the benchmark table copied from
  ``benchmarks/README.md``.

Everything lands in ``docs/generated/`` (not committed). ``docs/scripts/build.sh``
runs this, then ``mkdocs build --strict``.

    python docs/scripts/generate.py
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SNIPPETS = REPOSITORY / "docs" / "scripts" / "snippets"
GENERATED = REPOSITORY / "docs" / "generated"
FIGURES = GENERATED / "figures"

CLI_SESSIONS = {
    "cli_demo": ["demo"],
    "cli_help": ["--help"],
    "cli_grad_help": ["grad", "--help"],
    "cli_fit_help": ["fit", "--help"],
    "cli_grad_pretty": ["grad", "a*exp(-b*x) + c", "--wrt", "a,b,c"],
    "cli_grad_text": ["grad", "softplus(-y*(w*x + b))", "--wrt", "w,b", "--format", "text"],
    "cli_grad_latex": ["grad", "a*exp(-b*x) + c", "--wrt", "a,b,c", "--format", "latex"],
    "cli_grad_program": ["grad", "(w*x + b - y)^2", "--wrt", "w,b", "--format", "program"],
    "cli_fit": ["fit", "y ~ a*exp(-b*x) + c", "--data", "examples/data/decay.csv",
                "--plot", "docs/generated/figures/decay_fit.png", "--json", "docs/generated/decay_fit.json"],
    "cli_fit_adam": ["fit", "y ~ a*exp(-b*x) + c", "--data", "examples/data/decay.csv", "--init", "a=1,b=1,c=0",
                     "--optimizer", "adam", "--lr", "0.05", "--epochs", "1500", "--quiet"],
    "cli_fit_misra1a": ["fit", "y ~ b1*(1-exp(-b2*x))", "--data", "examples/data/misra1a.csv",
                        "--init", "b1=500,b2=1e-4"],
    "cli_error_column": ["fit", "y ~ a*exp(-b*t) + c", "--data", "examples/data/decay.csv", "--params", "a,b,c"],
    "cli_error_formula": ["grad", "a*x + __import__('os').system('echo hi')"],
    "cli_cache": ["cache", "info"],
}


def environment():
    env = dict(os.environ, MPLBACKEND="Agg", COLUMNS="100")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
    return env


def run(argv, output: Path, *, prompt=None, check=True):
    """Run ``argv`` from the repository root; write its output (after ``prompt`` if given) to ``output``."""
    started = time.perf_counter()
    completed = subprocess.run(argv, cwd=REPOSITORY, env=environment(), capture_output=True, text=True)
    if check and completed.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed ({completed.returncode}):\n{completed.stderr}")
    text = completed.stdout + (completed.stderr if completed.returncode else "")
    text = text.replace(str(REPOSITORY) + os.sep, "").replace(str(Path.home()), "~")
    output.write_text((f"$ {prompt}\n" if prompt else "") + text.rstrip() + "\n")
    print(f"  {output.relative_to(REPOSITORY)}  ({time.perf_counter() - started:.1f} s)")


def snippets():
    for script in sorted(SNIPPETS.glob("*.py")):
        run([sys.executable, str(script)], GENERATED / f"{script.stem}.txt")


def cli_sessions():
    for name, argv in CLI_SESSIONS.items():
        prompt = "symdiff " + " ".join(f'"{a}"' if re.search(r"[ ~*(]", a) else a for a in argv)
        run([sys.executable, "-m", "symdiff", *argv], GENERATED / f"{name}.txt", prompt=prompt,
            check=not name.startswith("cli_error"))


def examples():
    (GENERATED / "examples").mkdir(exist_ok=True)
    for script in sorted((REPOSITORY / "examples").glob("*.py")):
        out = ["--out", str(FIGURES)] if "--out" in script.read_text() else []
        run([sys.executable, str(script), *out], GENERATED / "examples" / f"{script.stem}.txt",
            prompt=f"python examples/{script.name}")


def kernel_listings():
    """The LLVM IR (as generated, and after LLVM's O3) and assembly of the linear-regression kernel."""
    import sympy as sp

    sys.path.insert(0, str(REPOSITORY))
    import symdiff as sd

    w, b, x, y = sp.symbols("w b x y")
    kernel = sd.Objective((w * x + b - y) ** 2, params=[w, b], data=[x, y]).compile(cache=False)
    (GENERATED / "linear_kernel.ll").write_text(kernel.llvm_ir)
    (GENERATED / "linear_kernel_optimized.ll").write_text(kernel.optimized_llvm_ir)
    (GENERATED / "linear_kernel.s").write_text(kernel.asm)
    loop = _hot_loop(kernel.asm)
    (GENERATED / "linear_kernel_loop.s").write_text(loop)
    vector = sorted(set(re.findall(r"%([xyz]mm)\d+", kernel.asm)))
    (GENERATED / "linear_kernel_facts.txt").write_text(
        f"lanes per vector: {kernel.lanes}\n"
        f"vector registers used in the assembly: {', '.join(vector) or 'none'}\n"
        f"lines: LLVM IR {len(kernel.llvm_ir.splitlines())}, optimized {len(kernel.optimized_llvm_ir.splitlines())}, "
        f"assembly {len(kernel.asm.splitlines())}\n"
    )
    a, c, d, e = sp.symbols("a c d e")
    curve = sd.Objective((a * sp.exp(-b * x) + c * sp.sin(d * x + e) - y) ** 2, params=[a, b, c, d, e],
                         data=[x, y]).compile(cache=False)
    called = sorted({f for f in re.findall(r"call [^@]*@\"?([\w.]+)", curve.optimized_llvm_ir) if not f.startswith("llvm.")})
    (GENERATED / "curve_kernel_calls.txt").write_text("\n".join(called) + "\n")
    print("  docs/generated/linear_kernel.{ll,s}, curve_kernel_calls.txt")


def _hot_loop(asm: str) -> str:
    """The assembly block with the most packed floating-point instructions: the vector loop body."""
    blocks, current = [], []
    for line in asm.splitlines():
        if re.match(r"^\.?L\w*:|^\w+:", line) and current:
            blocks.append(current)
            current = []
        current.append(line)
    blocks.append(current)
    packed = re.compile(r"\bv\w+p[sd]\b")
    best = max(blocks, key=lambda block: sum(bool(packed.search(line)) for line in block))
    label = best[0].rstrip(":")
    for end, line in enumerate(best):
        if line.split()[:1] and line.split()[0].startswith("j") and label in line:
            best = best[: end + 1]
            break
    return "\n".join(best) + "\n"


def benchmark_table():
    """benchmarks/README.md, headings demoted one level and relative links made plain text."""
    source = REPOSITORY / "benchmarks" / "README.md"
    target = GENERATED / "benchmarks.md"
    if not source.exists():
        target.write_text("No benchmark table yet: `benchmarks/README.md` does not exist in this checkout.\n")
        return
    lines = source.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join("#" + line if line.startswith("#") else line for line in lines)
    text = re.sub(r"\[([^\]]+)\]\((?!https?://)[^)]*\)", r"`\1`", text)
    target.write_text(text.strip() + "\n")
    print(f"  {target.relative_to(REPOSITORY)}")


def main():
    FIGURES.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for step in (snippets, cli_sessions, examples, kernel_listings, benchmark_table):
        print(step.__name__.replace("_", " "))
        step()
    print(f"generated in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
