import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

# Tests never read or fill the user's compile cache: one private cache per test session.
if "SYMDIFF_CACHE_DIR" not in os.environ:
    os.environ["SYMDIFF_CACHE_DIR"] = os.path.join(tempfile.mkdtemp(prefix="symdiff-test-"), "cache")
os.environ.setdefault("MPLBACKEND", "Agg")
