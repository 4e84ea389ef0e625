"""Real kill -9 crash test.

Each iteration starts crash_driver (several threads committing mail until killed), waits a
random 5-300 ms, kills it with SIGKILL, then runs crash_check, which recovers the database and
checks that every acknowledged transaction is there and nothing is half-visible. Every 20
iterations `tandemctl db verify` also checks the database, when that binary has been built.
One run in three commits large batches, which begin generations larger than the 64 KiB
standard (2, 4 or 8 times it); the test counts such files after each check and requires some,
so kills do land around them.

Environment: TANDEM_BUILD_DIR (the build tree; set by ctest), KILL9_ITERATIONS (default 200),
KILL9_SEED (random delays; default from the clock, printed so a failure can be replayed).
Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/crash/test_kill9.py
"""

import os
import random
import shutil
import signal
import struct
import subprocess
import tempfile
import time

BUILD = os.environ.get("TANDEM_BUILD_DIR", "build")
DRIVER = os.path.join(BUILD, "tests", "crash", "crash_driver")
CHECK = os.path.join(BUILD, "tests", "crash", "crash_check")
TANDEMCTL = os.path.join(BUILD, "src", "tandemctl", "tandemctl")


def larger_generations(db):
    """Generations of the log begun larger than the driver's 64 KiB for large batches: BEGIN
    (docs/formats/log.md: at offset 4096, its payload after a 24-byte frame header) names a
    size of 2, 4 or 8 times 64 KiB while the first record after it would fit 64 KiB (a record
    too large for a generation gets a generation of its own instead)."""
    log = os.path.join(db, "log")
    n = 0
    for name in os.listdir(log):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(log, name), "rb") as f:
            f.seek(4096)
            begin = f.read(52 + 24)
        if len(begin) < 76 or struct.unpack_from("<H", begin, 16)[0] != 3:  # BEGIN's type
            continue
        gen, = struct.unpack_from("<Q", begin, 24)
        size, = struct.unpack_from("<I", begin, 24 + 20)
        first_len, = struct.unpack_from("<I", begin, 52 + 20)  # the first record's length
        if (gen == int(name[:16], 16) and size in (2 * 65536, 4 * 65536, 8 * 65536)
                and 4096 + 52 + first_len + 28 + 44 <= 65536):
            n += 1
    return n


def run(args, timeout=120):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def test_kill9_iterations():
    iterations = int(os.environ.get("KILL9_ITERATIONS", "200"))
    seed = int(os.environ.get("KILL9_SEED", str(time.time_ns() % 1_000_000)))
    rng = random.Random(seed)
    print(f"kill9: {iterations} iterations, KILL9_SEED={seed}")
    tmp = tempfile.mkdtemp(prefix="tdm-kill9-")
    db = os.path.join(tmp, "db")
    side = os.path.join(tmp, "side.txt")
    started = time.monotonic()
    verified = 0
    larger_seen = 0
    verify_skipped = not os.access(TANDEMCTL, os.X_OK)
    try:
        r = run([DRIVER, "create", db])
        assert r.returncode == 0, r.stdout
        for i in range(1, iterations + 1):
            threads = rng.randint(2, 4)
            drv = subprocess.Popen([DRIVER, "run", db, side, str(i), str(threads)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(rng.uniform(0.005, 0.300))
            if drv.poll() is not None:
                out = drv.communicate()[0]
                raise AssertionError(f"iteration {i}: driver exited by itself "
                                     f"({drv.returncode}): {out}")
            os.kill(drv.pid, signal.SIGKILL)
            drv.communicate()
            assert drv.returncode == -signal.SIGKILL

            r = run([CHECK, db, side])
            assert r.returncode == 0, f"iteration {i} (KILL9_SEED={seed}): {r.stdout}"
            larger_seen += larger_generations(db)
            if i % 20 == 0 and not verify_skipped:
                v = run([TANDEMCTL, "db", "verify", db])
                assert v.returncode == 0, f"iteration {i}: tandemctl db verify: {v.stdout}"
                verified += 1
        elapsed = time.monotonic() - started
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        note = (f"tandemctl db verify ran {verified} times" if not verify_skipped else
                f"tandemctl db verify skipped: {TANDEMCTL} not built")
        print(f"kill9: {iterations} iterations in {elapsed:.1f} s; {note}; larger generation "
              f"files seen after the checks: {larger_seen}; last check: {last}")
        if iterations >= 3:
            assert larger_seen > 0, "no generation was begun larger for large batches"
    finally:
        if os.environ.get("KILL9_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
