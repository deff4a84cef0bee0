"""NVML helpers: GPU static facts, a clock/power/thermal snapshot, and the energy counter.

Everything degrades to ``None`` without a GPU, without the NVML library or without
``nvidia-ml-py`` (``pynvml.nvmlInit()`` raises ``NVMLError_LibraryNotFound`` on a machine with no
driver). NVML is read without creating a CUDA context, so the sweep's parent process can take a
snapshot around every cell while the worker process owns the GPU.

The GPU is found by UUID when one is given (the worker reports torch's device UUID), else by
the first entry of ``CUDA_VISIBLE_DEVICES`` (an index or a ``GPU-...`` UUID), else index 0.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()
_STATE: dict = {"init": None}

#: Clock-event ("throttle") reason bits, named as ``nvidia-smi -q`` names them.
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def _nvml():
    """The initialised ``pynvml`` module, or None when NVML cannot be used here."""
    with _LOCK:
        if _STATE["init"] is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _STATE["init"] = pynvml
            except Exception:  # no package, no library, no driver: a CPU machine
                _STATE["init"] = False
        return _STATE["init"] or None


def _call(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:
        return default


def _str(x):
    return x.decode() if isinstance(x, bytes) else x


def handle(uuid: str | None = None, index: int | None = None):
    """An NVML device handle, or None."""
    nv = _nvml()
    if nv is None:
        return None
    if uuid:
        u = str(uuid)
        u = u if u.startswith(("GPU-", "MIG-")) else "GPU-" + u
        h = _call(nv.nvmlDeviceGetHandleByUUID, u)
        if h is not None:
            return h
    if index is None:
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if first.startswith(("GPU-", "MIG-")):
            h = _call(nv.nvmlDeviceGetHandleByUUID, first)
            if h is not None:
                return h
        index = int(first) if first.isdigit() else 0
    if _call(nv.nvmlDeviceGetCount, default=0) <= index:
        return None
    return _call(nv.nvmlDeviceGetHandleByIndex, index)


def driver_version() -> str | None:
    nv = _nvml()
    return None if nv is None else _str(_call(nv.nvmlSystemGetDriverVersion))


def static_info(h) -> dict:
    """Facts that do not change during a run: name, UUID, max clocks, power limit, memory."""
    nv = _nvml()
    if nv is None or h is None:
        return {}
    mem = _call(nv.nvmlDeviceGetMemoryInfo, h)
    limit = _call(nv.nvmlDeviceGetPowerManagementLimit, h)
    return {
        "name": _str(_call(nv.nvmlDeviceGetName, h)),
        "uuid": _str(_call(nv.nvmlDeviceGetUUID, h)),
        "mem_bytes": None if mem is None else int(mem.total),
        "power_limit_w": None if limit is None else limit / 1e3,
        "max_clocks_mhz": {
            "sm": _call(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM),
            "mem": _call(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_MEM),
        },
        "energy_counter": energy_mj(h) is not None,
    }


def throttle_reasons(mask: int | None) -> list[str] | None:
    """Names of the set bits of a clock-event reason mask (unknown bits as hex)."""
    if mask is None:
        return None
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    if rest:
        names.append(hex(rest))
    return names


def snapshot(h) -> dict | None:
    """Current SM/memory clocks, temperature, power draw, clock-event reasons, energy counter."""
    nv = _nvml()
    if nv is None or h is None:
        return None
    get_reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    power = _call(nv.nvmlDeviceGetPowerUsage, h)
    return {
        "clocks_mhz": {
            "sm": _call(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
            "mem": _call(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_MEM),
        },
        "temperature_c": _call(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU),
        "power_w": None if power is None else power / 1e3,
        "throttle_reasons": throttle_reasons(_call(get_reasons, h) if get_reasons else None),
        "energy_mj": energy_mj(h),
    }


def energy_mj(h) -> int | None:
    """The GPU's total energy counter in millijoules (Volta and newer), or None."""
    nv = _nvml()
    if nv is None or h is None:
        return None
    return _call(nv.nvmlDeviceGetTotalEnergyConsumption, h)


#: Clock-event reasons that mean the clocks were cut for power or heat: samples taken while one
#: of them is set are flagged (``throttled_frac``). Idle, application-clock and sync-boost
#: reasons are not throttling.
THROTTLING = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)


def clock_state(h) -> dict | None:
    """The SM clock (MHz) and the set clock-event reasons, read cheaply around a sample batch."""
    nv = _nvml()
    if nv is None or h is None:
        return None
    get_reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    return {
        "sm_mhz": _call(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM),
        "reasons": throttle_reasons(_call(get_reasons, h) if get_reasons else None),
    }


def throttled(*states: dict | None) -> bool | None:
    """Whether any of the clock states shows power or thermal throttling; None if none was read."""
    read = [s for s in states if s and s.get("reasons") is not None]
    if not read:
        return None
    return any(THROTTLING.intersection(s["reasons"]) for s in read)


def lock_clocks(h) -> tuple[bool, str]:
    """Lock the SM clock at its maximum (``nvmlDeviceSetGpuLockedClocks``); (done, note).

    Needs root (or a driver set up to allow it); otherwise the note says why and nothing changes.
    """
    nv = _nvml()
    if nv is None or h is None:
        return False, "clocks not locked: no NVML device"
    top = _call(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM)
    if not top:
        return False, "clocks not locked: the maximum SM clock is unknown"
    try:
        nv.nvmlDeviceSetGpuLockedClocks(h, top, top)
    except Exception as exc:  # NVMLError_NoPermission without root, NotSupported on some boards
        return False, f"clocks not locked ({type(exc).__name__}: {exc}); run as root or drop --lock-clocks"
    return True, f"SM clock locked at {top} MHz"


def unlock_clocks(h) -> bool:
    """Undo :func:`lock_clocks` (``nvmlDeviceResetGpuLockedClocks``); whether it succeeded."""
    nv = _nvml()
    if nv is None or h is None:
        return False
    try:
        nv.nvmlDeviceResetGpuLockedClocks(h)
    except Exception:
        return False
    return True
