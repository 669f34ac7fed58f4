"""The limits a forked child puts on itself before running user code, all enforced by the
kernel (so ``ctypes`` or any other trick inside the child cannot lift them):

- rlimits: CPU seconds (the runner's watchdog is finer), address space, file size, open files,
  processes, no core dumps;
- Landlock (Linux >= 5.13): files are readable only under the Python standard library, and
  read/write only under the run's private temp dir; TCP bind/connect and signals/abstract
  sockets outside the sandbox are refused too where the kernel's Landlock ABI has them;
- seccomp (through libseccomp's ``pyseccomp``): creating sockets, forking, threads, exec,
  ptrace, signals, raising rlimits, namespaces, mounts, io_uring, privilege changes... kill
  the child (SIGSYS); without Landlock, opening any file fails (EACCES).

Built once in the runner (``Lock.prepare``) and applied in each child (``Lock.apply``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from dataclasses import dataclass
from importlib.util import module_from_spec, spec_from_file_location
from typing import Any

_PR_SET_NO_NEW_PRIVS = 38
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_READ = (1 << 2) | (1 << 3)  # READ_FILE | READ_DIR
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}  # how many access-fs bits each ABI has
_NET_ALL = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP (ABI 4)
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL (ABI 6)

KILLED_SYSCALLS = (
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # child processes, threads, other programs
    "fork", "vfork", "clone", "execve", "execveat",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kill", "tkill", "tgkill",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    # the limits themselves, namespaces, mounts, privileges
    "setrlimit", "prlimit64", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "mount_setattr", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "capset", "personality",
    # kernel interfaces that bypass seccomp or reach outside
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open",
    "userfaultfd", "keyctl", "add_key", "request_key", "name_to_handle_at", "open_by_handle_at",
    "mknod", "mknodat", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "swapon", "swapoff", "syslog", "acct", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "quotactl", "vhangup",
    "sethostname", "setdomainname",
)  # fmt: skip
"""System calls that end the child at once (SIGSYS): the node fails with type ``sandbox``."""
FILE_SYSCALLS = ("open", "openat", "openat2", "creat")
"""Refused (EACCES) when the kernel has no Landlock: then no file can be opened at all."""


class LockError(Exception):
    """The sandbox cannot be set up on this machine (the node fails; nothing runs unjailed)."""


@dataclass(slots=True)
class Lock:
    cpu_s: int
    memory_bytes: int
    read_only: list[str]
    landlock_abi: int
    seccomp_filter: Any

    @classmethod
    def prepare(cls, cpu_s: int, memory_bytes: int, read_only: list[str], pyseccomp: str) -> Lock:
        abi = _landlock_abi()
        return cls(cpu_s, memory_bytes, read_only, abi, _seccomp_filter(pyseccomp, abi > 0))

    def apply(self, private_dir: str) -> None:
        """In the child, last thing before user code. Irreversible."""
        limits = {
            resource.RLIMIT_CPU: (self.cpu_s, self.cpu_s + 1),
            resource.RLIMIT_AS: (self.memory_bytes, self.memory_bytes),
            resource.RLIMIT_FSIZE: (self.memory_bytes, self.memory_bytes),
            resource.RLIMIT_NOFILE: (64, 64),
            resource.RLIMIT_NPROC: (0, 0),
            resource.RLIMIT_CORE: (0, 0),
        }
        for which, value in limits.items():
            resource.setrlimit(which, value)
        if self.landlock_abi > 0:
            _landlock(self.landlock_abi, self.read_only, private_dir)
        self.seccomp_filter.load()


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _landlock_abi() -> int:
    try:
        return _syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock(abi: int, read_only: list[str], private_dir: str) -> None:
    all_fs = (1 << _FS_BITS_BY_ABI.get(abi, 16)) - 1
    attr = _RulesetAttr(all_fs, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0)
    try:
        for path, access in [*((p, _READ) for p in read_only), (private_dir, all_fs)]:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                _syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            finally:
                os.close(fd)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        _syscall(_SYS_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


def _seccomp_filter(path: str, landlock: bool) -> Any:
    spec = spec_from_file_location("pyseccomp", path)
    if spec is None or spec.loader is None:
        raise LockError(f"cannot load pyseccomp from {path}")
    seccomp = module_from_spec(spec)
    try:
        spec.loader.exec_module(seccomp)
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
    except Exception as exc:  # libseccomp.so.2 missing: no sandbox, so no code runs
        raise LockError(f"seccomp is unavailable ({exc}); install libseccomp2") from exc
    for name in KILLED_SYSCALLS:
        _add(seccomp, rules, seccomp.KILL_PROCESS, name)
    # glibc starts threads with clone3 and falls back to clone (killed above) on ENOSYS
    _add(seccomp, rules, seccomp.ERRNO(errno.ENOSYS), "clone3")
    if not landlock:
        for name in FILE_SYSCALLS:
            _add(seccomp, rules, seccomp.ERRNO(errno.EACCES), name)
    return rules


def _add(seccomp: Any, rules: Any, action: int, name: str) -> None:
    try:
        rules.add_rule(action, name)
    except (ValueError, OSError, RuntimeError):
        # a name this architecture has no such call for (``fork`` on aarch64, ``iopl``)
        if seccomp.resolve_syscall(seccomp.system_arch(), name) >= 0:
            raise
