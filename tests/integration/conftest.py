"""Shared fixtures for tandem's integration tests (pytest, run by Debian's /usr/bin/python3).

TANDEM_BUILD_DIR (set by ctest's integration_cluster and integration_pytest) is the CMake
build directory; every built program is found under it by name, so new test files only ask
for `tandem_bin("name")`.
"""
import os
import pathlib
import subprocess

import pytest

# Where CMake puts each program, relative to the build directory.
_PROGRAMS = {
    "tandemctl": "src/tandemctl/tandemctl",
    "tandemd": "src/tandemd/tandemd",
    "tdm_populate": "tests/integration/tdm_populate",
    "tdm_ipc_client": "tests/integration/tdm_ipc_client",
    "tdm_maildump": "tests/integration/tdm_maildump",
}


@pytest.fixture(scope="session")
def build_dir():
    d = os.environ.get("TANDEM_BUILD_DIR")
    if not d:
        pytest.fail("TANDEM_BUILD_DIR is not set: run through ctest, or export it to the "
                    "CMake build directory")
    return pathlib.Path(d)


@pytest.fixture(scope="session")
def tandem_bin(build_dir):
    """tandem_bin("tandemctl") -> path of a built program; fails the test if it is missing."""
    def find(name):
        p = build_dir / _PROGRAMS.get(name, name)
        if not p.is_file():
            pytest.fail(f"{p} is not built (run cmake --build {build_dir})")
        return p
    return find


@pytest.fixture(scope="session")
def tandemctl(tandem_bin):
    """tandemctl(*args, check=None) -> CompletedProcess with text stdout/stderr."""
    exe = tandem_bin("tandemctl")

    def run(*args, timeout=120):
        return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                              timeout=timeout)
    return run


@pytest.fixture
def db_dir(tmp_path):
    """A path for a database: not created, so tests choose how it comes to exist."""
    return tmp_path / "db"
