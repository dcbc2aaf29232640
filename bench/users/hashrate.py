"""Raw argon2id hashes per second with the users service's parameters, ``threads`` at once.

    python -m bench.users.hashrate SECONDS THREADS

Prints one number. Run it pinned (taskset) to the cores the users service gets.
"""

from __future__ import annotations

import sys
import threading
import time

from eventaudit.users.passwords import hash_sync


def rate(seconds: float, threads: int) -> float:
    """Hashes/s of ``threads`` threads each hashing in a loop for about ``seconds``."""
    counts = [0] * threads
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
    return sum(counts) / (time.perf_counter() - start)


if __name__ == "__main__":
    print(rate(float(sys.argv[1]), int(sys.argv[2])))
