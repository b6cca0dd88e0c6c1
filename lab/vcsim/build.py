"""Build the lab's vcsim program from Debian's govmomi sources, offline, cached.

Debian's ``golang-github-vmware-govmomi-dev`` ships govmomi's ``simulator``
package (0.24) under ``/usr/share/gocode`` but no ``vcsim`` program, so
rackflow carries its own small ``main`` package (the ``*.go`` files beside
this module) and builds it in GOPATH mode with the module proxy off. The
binary is cached under ``$XDG_CACHE_HOME/rackflow/`` (``~/.cache`` by
default), keyed by the SHA-256 of the Go sources and the Go version: 20-45 s
cold, nothing to do warm.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["APT_PACKAGES", "GOCODE", "VcsimBuildError", "build_vcsim", "cache_dir", "source_digest"]

logger = logging.getLogger("rackflow.lab.vcsim")

GOCODE = Path("/usr/share/gocode")
_SIMULATOR = GOCODE / "src/github.com/vmware/govmomi/simulator"
_SOURCE_DIR = Path(__file__).resolve().parent
_PACKAGE = "rackflowvcsim"
APT_PACKAGES = ("golang-go", "golang-github-vmware-govmomi-dev")


class VcsimBuildError(RuntimeError):
    """The vcsim program could not be built (missing toolchain or sources, compile error)."""


def cache_dir() -> Path:
    """Where built binaries live: ``$XDG_CACHE_HOME/rackflow`` or ``~/.cache/rackflow``.

    Returns:
        The directory (not created here).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rackflow"


def _sources() -> list[Path]:
    return sorted(p for p in _SOURCE_DIR.glob("*.go") if not p.name.endswith("_test.go"))


def _go() -> str:
    go = shutil.which("go")
    if go is None and Path("/usr/lib/go/bin/go").exists():  # Debian's golang-go, PATH not set
        go = "/usr/lib/go/bin/go"
    if go is None or not _SIMULATOR.is_dir():
        raise VcsimBuildError(
            "building vcsim needs Go and govmomi's simulator sources: "
            f"apt-get install -y --no-install-recommends {' '.join(APT_PACKAGES)}"
        )
    return go


def _go_version(go: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip()


def source_digest(go_version: str = "") -> str:
    """SHA-256 over the Go sources (names and contents) and the Go version.

    Args:
        go_version: Toolchain version, so a Go upgrade rebuilds.

    Returns:
        Hex digest.
    """
    digest = hashlib.sha256(go_version.encode())
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _environment(workdir: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GO111MODULE="off",
        GOPATH=f"{workdir}:{GOCODE}",
        GOPROXY="off",
        GOFLAGS="",  # a user's -mod=... would force module mode
        CGO_ENABLED="0",
    )
    env.setdefault("GOCACHE", str(cache / "go-build"))
    return env


def build_vcsim(*, cache: Path | None = None, timeout_s: float = 600.0) -> Path:
    """Return the cached vcsim binary, building it first when needed.

    Concurrent callers (several pytest processes) wait on a lock file and
    reuse the first build; the binary is moved into place atomically.

    Args:
        cache: Cache directory (default :func:`cache_dir`).
        timeout_s: Limit for ``go build``.

    Returns:
        Path of the executable.

    Raises:
        VcsimBuildError: Go or govmomi is missing, or the build failed.
    """
    go = _go()
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    binary = cache / f"vcsim-{source_digest(_go_version(go))}"
    if binary.exists():
        return binary
    with open(cache / f"{binary.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():  # another process built it while we waited
            return binary
        with tempfile.TemporaryDirectory(prefix="vcsim-build-", dir=cache) as tmp:
            workdir = Path(tmp)
            src = workdir / "src" / _PACKAGE
            src.mkdir(parents=True)
            for path in _sources():
                shutil.copy2(path, src / path.name)
            out = workdir / "vcsim"
            logger.info("building vcsim from %s (one-off, 20-45 s)", _SOURCE_DIR)
            try:
                done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    [go, "build", "-o", str(out), "."],
                    cwd=src,
                    env=_environment(workdir, cache),
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise VcsimBuildError(f"go build did not finish in {timeout_s:.0f} s") from exc
            if done.returncode != 0:
                raise VcsimBuildError(f"go build failed:\n{done.stderr.strip()[-4000:]}")
            os.replace(out, binary)
    return binary
