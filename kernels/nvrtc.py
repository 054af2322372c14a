"""CUDA C++ kernels compiled at run time: NVRTC turns a source into a cubin for the device's architecture, the
driver loads it, and `launch` starts it through cuLaunchKernelEx (thread-block clusters, programmatic dependent
launch). Used by the kernels Triton 3.6 cannot express (`cuda_decode`, `cuda_topk`). Compiling needs NVRTC only,
no GPU, so CI checks each kernel's registers and spills on the CPU."""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys

import torch


def nvrtc_library() -> ctypes.CDLL:
    """libnvrtc: torch's (CUDA builds load it), else one under site-packages' nvidia/*/lib, or $SPARSEBENCH_NVRTC."""
    names = []
    if os.environ.get("SPARSEBENCH_NVRTC"):
        names.append(os.environ["SPARSEBENCH_NVRTC"])
    cuda = getattr(torch.version, "cuda", None)
    if cuda:
        names.append(f"libnvrtc.so.{cuda.split('.')[0]}")
    for p in sys.path:
        names += sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib", "libnvrtc.so*")))
    names.append("libnvrtc.so")
    for name in names:
        if "builtins" in name or ".alt." in name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise RuntimeError("the CUDA kernels need NVRTC (libnvrtc.so): not found next to torch or under site-packages "
                       "(set SPARSEBENCH_NVRTC to its path)")


@functools.lru_cache(maxsize=None)
def compile_cubin(source: str, arch: str, name: str) -> tuple[bytes, str]:
    """(cubin, ptxas' resource report) of `source` compiled for `arch` (e.g. sm_90); raises with NVRTC's log on an
    error. `name` names the source in that log."""
    lib = nvrtc_library()
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None):
        raise RuntimeError("nvrtcCreateProgram failed")
    opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17", b"--ptxas-options=-v"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    res = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if res:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        raise RuntimeError(f"NVRTC failed to compile {name} for {arch}:\n{log.value.decode()}")
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetCUBIN(prog, cubin)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return cubin.raw, log.value.decode()


def kernel_report(log: str, kernel: str) -> str:
    """ptxas' lines about one kernel of a compile log (its registers, spills, stack)."""
    lines = log.splitlines()
    start = [i for i, line in enumerate(lines) if f"'{kernel}'" in line and "Compiling entry" in line]
    if not start:
        raise KeyError(f"no ptxas report for {kernel} in the log")
    out = []
    for line in lines[start[0]:]:
        if out and "Compiling entry" in line:
            break
        out.append(line)
    return "\n".join(out)


class _LaunchAttr(ctypes.Structure):  # CUlaunchAttribute: id, padding, a 64-byte value union
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_uint * 16)]


class _LaunchConfig(ctypes.Structure):  # CUlaunchConfig
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("smem", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_LaunchAttr)), ("n_attrs", ctypes.c_uint)]


_ATTR_CLUSTER, _ATTR_PDL, _FUNC_MAX_DYN_SMEM, _FUNC_WIDE_CLUSTERS = 4, 6, 8, 14


def _check(res: int, what: str) -> None:
    if res:
        raise RuntimeError(f"CUDA driver error {res} in {what}")


@functools.lru_cache(maxsize=None)
def _module(source: str, name: str, device_index: int):
    """(libcuda, CUmodule) of `source` loaded on a device (compiled for its architecture)."""
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(f"{name}: its first launch on a device loads it, which a CUDA graph capture does not "
                           "allow: launch it once before capturing")
    major, minor = torch.cuda.get_device_capability(device_index)
    cubin, _ = compile_cubin(source, f"sm_{major}{minor}", name)
    cu = ctypes.CDLL("libcuda.so.1")
    cu.cuLaunchKernelEx.argtypes = [ctypes.POINTER(_LaunchConfig), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    with torch.cuda.device(device_index):
        torch.cuda.current_stream().synchronize()  # the device's primary context is current on this thread
        mod = ctypes.c_void_p()
        _check(cu.cuModuleLoadData(ctypes.byref(mod), cubin), "cuModuleLoadData")
    return cu, mod


def function(source: str, name: str, kernel: str, device: torch.device, big_smem: bool = False,
             wide_clusters: bool = False):
    """(libcuda, CUfunction) of one kernel of `source` on a CUDA device (loaded on first use); big_smem: its dynamic
    shared memory limit raised to the device's opt-in maximum (for a kernel with no static shared memory);
    wide_clusters: clusters of more than 8 CTAs allowed (non-portable: up to 16 on an H100)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _function(source, name, kernel, index, big_smem, wide_clusters)


@functools.lru_cache(maxsize=None)
def _function(source: str, name: str, kernel: str, device_index: int, big_smem: bool, wide_clusters: bool):
    cu, mod = _module(source, name, device_index)
    fn = ctypes.c_void_p()
    _check(cu.cuModuleGetFunction(ctypes.byref(fn), mod, kernel.encode()), "cuModuleGetFunction")
    if big_smem:
        optin = torch.cuda.get_device_properties(device_index).shared_memory_per_block_optin
        _check(cu.cuFuncSetAttribute(fn, _FUNC_MAX_DYN_SMEM, optin), "cuFuncSetAttribute")
    if wide_clusters:
        _check(cu.cuFuncSetAttribute(fn, _FUNC_WIDE_CLUSTERS, 1), "cuFuncSetAttribute")
    return cu, fn


def launch(kernel: tuple, device: torch.device, grid: int, block: int, smem: int, args: list,
           cluster: int | None = None, pdl: bool = False) -> None:
    """Launch `kernel` ((libcuda, CUfunction) from `function`) on the device's current stream: a 1-D grid of `grid`
    CTAs of `block` threads with `smem` bytes of dynamic shared memory; args: ctypes values in the kernel's
    parameter order; cluster: CTAs per thread-block cluster (None: launched without clusters); pdl: launched as a
    programmatic dependent of the launch before it in the stream (it must call griddepcontrol.wait before reading
    that launch's results)."""
    cu, fn = kernel
    attrs = (_LaunchAttr * 2)()
    n = 0
    if cluster is not None:
        attrs[n].id = _ATTR_CLUSTER
        attrs[n].value[0], attrs[n].value[1], attrs[n].value[2] = cluster, 1, 1
        n += 1
    if pdl:
        attrs[n].id = _ATTR_PDL
        attrs[n].value[0] = 1
        n += 1
    cfg = _LaunchConfig((grid, 1, 1), (block, 1, 1), smem,
                        ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream), attrs, n)
    params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in args])
    _check(cu.cuLaunchKernelEx(ctypes.byref(cfg), fn, params, None), "cuLaunchKernelEx")
