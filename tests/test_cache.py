"""The on-disk kernel cache: whole entries or nothing, safe directories only, bounded size."""

import os
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from codegen.cache import CacheWarning, KernelCache, default_cache_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
POSIX = os.name == "posix"


@pytest.fixture(autouse=True)
def isolated_user_cache(tmp_path, monkeypatch):
    """Point every cache location a test could reach at a temporary directory."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.delenv("SYMDIFF_CACHE", raising=False)


@pytest.fixture
def cache(tmp_path):
    return KernelCache(tmp_path / "kernels")


def entry_file(cache, key):
    return cache.directory / (key + ".kernel")


def test_round_trip(cache):
    key = KernelCache.key("ir text", "float64", "x86_64-unknown-linux-gnu")
    payload = bytes(range(256)) * 100
    assert cache.get(key) is None
    assert cache.put(key, payload)
    assert cache.get(key) == payload
    assert entry_file(cache, key).read_bytes().endswith(payload)


def test_key_is_sha256_of_length_prefixed_parts():
    assert len(KernelCache.key("a")) == 64
    assert KernelCache.key("ab", "c") != KernelCache.key("a", "bc")
    assert KernelCache.key("x", "") != KernelCache.key("x")
    assert KernelCache.key("ir", b"bytes") == KernelCache.key("ir", "bytes")
    with pytest.raises(TypeError):
        KernelCache.key("ir", 3)


def test_malformed_keys_are_rejected_before_touching_disk(cache):
    for bad in ["../../etc/passwd", "ABC", "0" * 63, "g" * 64]:
        with pytest.raises(ValueError):
            cache.get(bad)
        with pytest.raises(ValueError):
            cache.put(bad, b"x")


def test_directory_is_created_private(tmp_path):
    cache = KernelCache(tmp_path / "a" / "b")
    assert cache.enabled
    if POSIX:
        assert stat.S_IMODE(os.stat(cache.directory).st_mode) & 0o077 == 0


def damage_and_expect_rebuild(cache, key, payload, damage):
    assert cache.put(key, payload)
    path = entry_file(cache, key)
    damage(path)
    with pytest.warns(CacheWarning):
        assert cache.get(key) is None
    assert not path.exists()
    assert cache.put(key, payload)
    assert cache.get(key) == payload


def test_corrupted_entry_is_detected_deleted_and_rebuilt(cache):
    def flip_last_byte(path):
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0xFF
        path.write_bytes(bytes(blob))

    damage_and_expect_rebuild(cache, KernelCache.key("corrupt"), b"\x7fELF" + b"\x01" * 4000, flip_last_byte)


def test_truncated_entry_is_detected_deleted_and_rebuilt(cache):
    def truncate(path):
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])

    damage_and_expect_rebuild(cache, KernelCache.key("truncated"), b"\x7fELF" + b"\x02" * 4000, truncate)


def test_entry_cut_inside_its_header_is_detected(cache):
    damage_and_expect_rebuild(cache, KernelCache.key("header"), b"payload",
                              lambda path: path.write_bytes(path.read_bytes()[:20]))


def test_foreign_file_is_detected(cache):
    damage_and_expect_rebuild(cache, KernelCache.key("foreign"), b"payload",
                              lambda path: path.write_bytes(b"\x7fELF\x02\x01\x01 not ours"))


def test_entry_of_another_key_is_detected(cache):
    other = KernelCache.key("other")
    cache.put(other, b"other payload")
    damage_and_expect_rebuild(cache, KernelCache.key("mine"), b"my payload",
                              lambda path: path.write_bytes(entry_file(cache, other).read_bytes()))


def test_concurrent_writers_of_one_key_all_succeed_and_the_entry_is_whole(tmp_path):
    """Six processes write one key 15 times each while a seventh keeps reading it."""
    directory = tmp_path / "shared"
    go = tmp_path / "go"
    key = KernelCache.key("same formula")
    writer = textwrap.dedent(
        f"""
        import os, sys, time, warnings
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from codegen.cache import KernelCache
        warnings.simplefilter("error")
        me = int(sys.argv[1])
        cache = KernelCache({str(directory)!r})
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        payload = bytes([me]) * (1 << 20) + b"writer %d" % me
        ok = all(cache.put({key!r}, payload) for _ in range(15))
        print("stored" if ok else "failed")
        """
    )
    reader = textwrap.dedent(
        f"""
        import os, sys, time, warnings
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from codegen.cache import KernelCache
        warnings.simplefilter("error")
        cache = KernelCache({str(directory)!r})
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        hits = 0
        deadline = time.time() + 1.5
        while time.time() < deadline:
            data = cache.get({key!r})
            if data is not None:
                me = data[0]
                assert data == bytes([me]) * (1 << 20) + b"writer %d" % me
                hits += 1
        print("hits", hits)
        """
    )
    KernelCache(directory)
    writers = [subprocess.Popen([sys.executable, "-c", writer, str(i)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in range(6)]
    readers = [subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)]
    time.sleep(0.3)
    go.touch()
    for process in writers + readers:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "failed" not in out
    assert int(out.split()[-1]) > 0, "the reader never saw an entry"
    data = KernelCache(directory).get(key)
    assert data is not None and data == bytes([data[0]]) * (1 << 20) + b"writer %d" % data[0]
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


needs_posix = pytest.mark.skipif(not POSIX, reason="POSIX ownership and permission bits")


def assert_refused(cache):
    assert not cache.enabled
    key = KernelCache.key("anything")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        assert cache.put(key, b"code") is False
        assert cache.get(key) is None
    assert cache.info()["enabled"] is False


@needs_posix
def test_world_writable_directory_is_refused(tmp_path):
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.warns(CacheWarning, match="writable by group or others"):
        cache = KernelCache(directory)
    assert_refused(cache)


@needs_posix
def test_group_writable_parent_without_sticky_bit_is_refused(tmp_path):
    parent = tmp_path / "shared-parent"
    (parent / "mine").mkdir(parents=True, mode=0o700)
    os.chmod(parent, 0o775)
    with pytest.warns(CacheWarning, match="parent directory"):
        cache = KernelCache(parent / "mine")
    assert_refused(cache)


@needs_posix
def test_sticky_world_writable_parent_like_tmp_is_accepted(tmp_path):
    parent = tmp_path / "sticky"
    parent.mkdir()
    os.chmod(parent, 0o1777)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        cache = KernelCache(parent / "mine")
    assert cache.enabled


@needs_posix
def test_directory_made_unsafe_after_opening_is_refused_before_loading(cache):
    key = KernelCache.key("later")
    cache.put(key, b"code")
    os.chmod(cache.directory, 0o777)
    with pytest.warns(CacheWarning):
        assert cache.get(key) is None
    assert not cache.enabled


@needs_posix
def test_entry_writable_by_others_is_refused(cache):
    key = KernelCache.key("loose entry")
    cache.put(key, b"code")
    os.chmod(entry_file(cache, key), 0o666)
    with pytest.warns(CacheWarning, match="writable by group or others"):
        assert cache.get(key) is None


@needs_posix
def test_symlinked_entry_is_not_followed(cache, tmp_path):
    key = KernelCache.key("link")
    elsewhere = tmp_path / "elsewhere.kernel"
    other = KernelCache(tmp_path / "other")
    other.put(key, b"code")
    os.replace(entry_file(other, key), elsewhere)
    entry_file(cache, key).symlink_to(elsewhere)
    with pytest.warns(CacheWarning):
        assert cache.get(key) is None


@needs_posix
@pytest.mark.skipif(not POSIX or os.geteuid() != 0, reason="chown to another user needs root")
def test_directory_owned_by_another_user_is_refused(tmp_path):
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.warns(CacheWarning, match="owned by uid 65534"):
        cache = KernelCache(directory)
    assert_refused(cache)


def test_least_recently_used_entries_are_dropped_past_the_size_limit(tmp_path):
    payload = b"x" * 1000
    cache = KernelCache(tmp_path / "lru", max_bytes=3 * 1200)
    keys = [KernelCache.key(f"entry {i}") for i in range(4)]
    now = time.time()
    for age, key in zip([300, 200, 100], keys[:3]):
        assert cache.put(key, payload)
        os.utime(entry_file(cache, key), (now - age, now - age))
    assert cache.get(keys[0]) == payload
    assert cache.put(keys[3], payload)
    present = [cache.get(key) is not None for key in keys]
    assert present == [True, False, True, True]
    assert cache.info()["total_bytes"] <= cache.max_bytes


def test_entry_larger_than_the_limit_is_not_stored(tmp_path):
    cache = KernelCache(tmp_path / "small", max_bytes=500)
    key = KernelCache.key("big")
    assert cache.put(key, b"y" * 1000) is False
    assert cache.get(key) is None
    assert cache.info()["entries"] == 0


def test_info_and_clear(cache):
    for i in range(3):
        cache.put(KernelCache.key(str(i)), b"z" * 10)
    (cache.directory / ".tmp-leftover").write_bytes(b"half written")
    (cache.directory / "README").write_text("not an entry")
    info = cache.info()
    assert info["directory"] == str(cache.directory)
    assert info["entries"] == 3
    assert info["total_bytes"] == sum(entry_file(cache, KernelCache.key(str(i))).stat().st_size for i in range(3))
    assert info["max_bytes"] == 256 * 2**20
    assert info["enabled"] is True
    assert cache.clear() == 3
    assert cache.info()["entries"] == 0
    assert not (cache.directory / ".tmp-leftover").exists()
    assert (cache.directory / "README").exists()


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_symdiff_cache_off_disables_the_default_cache(monkeypatch, value):
    monkeypatch.setenv("SYMDIFF_CACHE", value)
    assert KernelCache.default() is None


def test_symdiff_cache_dir_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMDIFF_CACHE", "1")
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(tmp_path / "chosen"))
    cache = KernelCache.default()
    assert cache.directory == tmp_path / "chosen"
    assert cache.enabled and cache.directory.is_dir()


def test_platform_conventions(monkeypatch, tmp_path):
    monkeypatch.delenv("SYMDIFF_CACHE_DIR")
    home = Path(os.environ["HOME"])
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_cache_directory() == home / "xdg-cache" / "symdiff"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_directory() == home / ".cache" / "symdiff"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_cache_directory() == home / "Library" / "Caches" / "symdiff"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert default_cache_directory() == tmp_path / "Local" / "symdiff" / "Cache"


def test_unwritable_location_disables_without_failing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    with pytest.warns(CacheWarning):
        cache = KernelCache(blocker / "cache")
    assert_refused(cache)


def test_processes_compiling_one_objective_at_once_share_one_whole_entry(tmp_path):
    """Four processes compile the same objective at the same moment into an empty cache; a fifth loads it."""
    directory = tmp_path / "compile-cache"
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import os, sys, time, warnings
        sys.path.insert(0, {str(REPO_ROOT)!r})
        warnings.simplefilter("error")
        import numpy as np, sympy as sp, symdiff as sd, codegen
        a, b, c, x, y = sp.symbols("a b c x y", real=True)
        objective = sd.Objective((a * sp.exp(-b * x) + c - y) ** 2, params=[a, b, c], data=[x, y])
        objective.program()
        open(os.path.join({str(tmp_path)!r}, "ready-%d" % os.getpid()), "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        kernel = objective.compile()
        loss, grad = kernel(np.array([1.0, 0.5, 0.1]), {{"x": np.linspace(0, 2, 101), "y": np.cos(np.linspace(0, 2, 101))}})
        print(codegen.STATS["compiled"], codegen.STATS["disk_hits"], float(loss).hex(), *[g.hex() for g in grad.tolist()])
        """
    )
    env = dict(os.environ, SYMDIFF_CACHE_DIR=str(directory), SYMDIFF_CACHE="1", SYMDIFF_COMPILE_WORKER="0")
    racers = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(racers) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = []
    for process in racers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.split())
    late = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert late.returncode == 0, late.stderr
    compiled, disk_hits, *result = late.stdout.split()
    assert (compiled, disk_hits) == ("0", "1"), "the fifth process did not load the cached kernel"
    assert all(out[2:] == result for out in outputs), "processes disagree on the kernel's result"
    assert len([p for p in directory.iterdir() if p.suffix == ".kernel"]) == 1
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]


def test_compile_writes_the_cache_unless_told_not_to(tmp_path, monkeypatch):
    """compile(cache=False) and SYMDIFF_CACHE=0 leave the directory empty; the default fills it."""
    import numpy as np
    import sympy as sp
    import symdiff as sd

    w, x = sp.symbols("w x", real=True)
    directory = tmp_path / "compile-cache"
    monkeypatch.setenv("SYMDIFF_CACHE_DIR", str(directory))
    salt = sp.Rational(os.getpid(), 7919)  # a formula no earlier test compiled in this process

    def compile_new(k, **options):
        objective = sd.Objective((w * x - salt - k) ** 2, params=[w], data=[x])
        kernel = objective.compile(**options)
        assert np.isfinite(kernel.value(np.array([1.0]), {"x": np.ones(3)}))

    def entries():
        return [p for p in directory.iterdir() if p.suffix == ".kernel"] if directory.exists() else []

    compile_new(1, cache=False)
    assert entries() == []
    monkeypatch.setenv("SYMDIFF_CACHE", "0")
    compile_new(2)
    assert entries() == []
    monkeypatch.delenv("SYMDIFF_CACHE")
    compile_new(3)
    assert len(entries()) == 1
