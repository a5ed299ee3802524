"""The PASS/FAIL/SKIP lines, the measures and the time of each section."""

from __future__ import annotations

import contextlib
import time
import traceback

from ..common import log
from .environment import NEEDS
from .settings import CHECK_NAMES


# ------------------------------------------------------------------- report
class Report:
    """The PASS/FAIL/SKIP lines, the measures and the time of each section."""

    def __init__(self):
        self.checks: list[dict] = []
        self.measures: dict = {}
        self.sections: dict = {}

    def add(self, check: str, size: str, status: str, detail: str, figures: dict | None = None,
            tolerance: dict | None = None):
        self.checks.append({"check": check, "name": CHECK_NAMES[check], "size": size, "status": status,
                            "detail": detail, "figures": figures or {}, "tolerance": tolerance or {}})
        print(f"{status:<4}  [{check}] {CHECK_NAMES[check]} ({size}): {detail}", flush=True)

    def skip_missing(self, check: str, size: str, env: dict) -> bool:
        """SKIP (with the reason) when a package ``check`` needs is missing or unusable; True if skipped."""
        absent = [f"{dist} ({env['unusable'][dist]})" for module, dist in NEEDS[check].items()
                  if module in env["unusable_modules"]]
        if absent:
            self.add(check, size, "SKIP", f"needs {', '.join(absent)}; --wheels=build/gpu-wheels (make gpu-wheels) "
                                          f"installs RecBole, its light deps and pandas<3")
        return bool(absent)

    def run(self, check: str, size: str, fn, *args, **kwargs):
        """Run a check function returning (ok, detail, figures, tolerance); an exception is a FAIL."""
        try:
            ok, detail, figures, tolerance = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - a crash on the device is this check's failure, the others go on
            traceback.print_exc()
            self.add(check, size, "FAIL", f"{type(err).__name__}: {err}"[:400])
            return None
        self.add(check, size, "PASS" if ok else "FAIL", detail, figures, tolerance)
        return figures

    @contextlib.contextmanager
    def section(self, name: str):
        log(f"-- {name}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sections[name] = time.perf_counter() - start
            log(f"-- {name}: {self.sections[name]:.1f} s")

    def counts(self) -> dict:
        return {s: sum(c["status"] == s for c in self.checks) for s in ("PASS", "FAIL", "SKIP")}
