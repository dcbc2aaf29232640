"""Password hashing: argon2id with the OWASP parameters (m = 19 MiB, t = 2, p = 1), as a PHC string.

Hashing takes tens of milliseconds of CPU and 19 MiB of memory by design; :func:`hash_password`
runs it on a pool of one thread per core (argon2-cffi releases the GIL), so the event loop keeps
serving other requests and no more hashes run at once than there are cores to run them.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

#: OWASP Password Storage Cheat Sheet, argon2id: 19 MiB of memory, 2 iterations, 1 degree of parallelism.
MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=TIME_COST, memory_cost=MEMORY_KIB, parallelism=PARALLELISM, hash_len=32, salt_len=16, type=Type.ID
)


def _cores() -> int:
    """The cores this process may run on (its affinity, which taskset and cpusets narrow), not the machine's:
    two 19 MiB hashes taking turns on one core only evict each other from the cache."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity outside Linux
        return os.cpu_count() or 1


_pool = ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="argon2")


def hash_sync(password: str) -> str:
    """The argon2id PHC string of ``password`` (``$argon2id$v=19$m=19456,t=2,p=1$…``), on this thread."""
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    """:func:`hash_sync` on the hashing pool."""
    return await asyncio.get_running_loop().run_in_executor(_pool, hash_sync, password)


def verify(phc: str, password: str) -> bool:
    """Whether ``password`` matches the stored ``phc`` string."""
    try:
        return _hasher.verify(phc, password)
    except (VerificationError, InvalidHashError):
        return False
