"""Real kill -9 crash test.

Each iteration starts crash_driver (several threads committing mail until killed), waits a
random 5-300 ms, kills it with SIGKILL, then runs crash_check, which recovers the database and
checks that every acknowledged transaction is there and nothing is half-visible. Every 20
iterations `tandemctl db verify` also checks the database, when that binary has been built.

Environment: TANDEM_BUILD_DIR (the build tree; set by ctest), KILL9_ITERATIONS (default 200),
KILL9_SEED (random delays; default from the clock, printed so a failure can be replayed).
Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/crash/test_kill9.py
"""

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

BUILD = os.environ.get("TANDEM_BUILD_DIR", "build")
DRIVER = os.path.join(BUILD, "tests", "crash", "crash_driver")
CHECK = os.path.join(BUILD, "tests", "crash", "crash_check")
TANDEMCTL = os.path.join(BUILD, "src", "tandemctl", "tandemctl")


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
            if i % 20 == 0 and not verify_skipped:
                v = run([TANDEMCTL, "db", "verify", db])
                assert v.returncode == 0, f"iteration {i}: tandemctl db verify: {v.stdout}"
                verified += 1
        elapsed = time.monotonic() - started
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        note = (f"tandemctl db verify ran {verified} times" if not verify_skipped else
                f"tandemctl db verify skipped: {TANDEMCTL} not built")
        print(f"kill9: {iterations} iterations in {elapsed:.1f} s; {note}; last check: {last}")
    finally:
        if os.environ.get("KILL9_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
