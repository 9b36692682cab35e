import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

# Tests never read or fill the user's compile cache: one private cache per test session,
# made before collection (some test modules compile at import) and removed when it ends.
_SESSION_CACHE = None
if "SYMDIFF_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="symdiff-test-")
    os.environ["SYMDIFF_CACHE_DIR"] = os.path.join(_SESSION_CACHE, "cache")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
