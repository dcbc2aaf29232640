"""Raw argon2id hashes per second with the users service's parameters, ``threads`` at once.

    python -m bench.users.hashrate SECONDS THREADS

Prints hashes/s and the process's CPU milliseconds per hash. Run it pinned (taskset) to the
cores the users service gets.
"""

from __future__ import annotations

import sys
import threading
import time

from eventaudit.users.passwords import hash_sync


def rate(seconds: float, threads: int) -> tuple[float, float]:
    """Hashes/s of ``threads`` threads each hashing in a loop for about ``seconds``, and CPU ms per hash."""
    counts = [0] * threads
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            hash_sync("correct-horse-battery-staple")
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    return sum(counts) / elapsed, (time.process_time() - cpu) * 1000 / sum(counts)


if __name__ == "__main__":
    print(*rate(float(sys.argv[1]), int(sys.argv[2])))
