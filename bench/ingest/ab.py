"""Two audit services side by side, loaded in turn: server CPU per single event and events/s, A against B.

For a change whose effect is smaller than the machine's drift between two full ``bench.ingest``
runs. Both services run at once, pinned to the same CPU, each on a fresh SQLite file; wrk loads
one, then the other, alternating which goes first, for ``--rounds`` rounds of ``--seconds``.
Each side may run another source tree (``--a-src``, ``--b-src``: put first on ``PYTHONPATH``, e.g.
a ``git archive`` of an older commit with the compiled codec copied in) and extra environment.

    python -m bench.ingest.ab --a-src /tmp/old/src --b-src src --script binary.lua --conns 64
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import tempfile

from bench.ingest.__main__ import HERE, audit_command, cpu_seconds, free_port, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--a-src", help="source tree of A, put first on PYTHONPATH (default: the installed one)")
    parser.add_argument("--b-src", help="source tree of B, as --a-src")
    parser.add_argument("--a-env", default="", help="extra environment of A: NAME=VALUE,NAME=VALUE")
    parser.add_argument("--b-env", default="", help="extra environment of B")
    parser.add_argument("--script", default="binary.lua", choices=["binary.lua", "structured.lua", "batch.lua"])
    parser.add_argument("--conns", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of one run each (default 8)")
    parser.add_argument("--seconds", type=int, default=3, help="length of each run (default 3)")
    parser.add_argument("--audit-arg", action="append", default=[], help="one more argument for both services (repeat)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args(argv)

    def run(port: int, pid: int, seconds: int) -> tuple[float, float]:
        before = cpu_seconds(pid)
        command = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", "-c", str(args.conns), "-d", f"{seconds}s"]
        command += ["-s", str(HERE / args.script), f"http://127.0.0.1:{port}/"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
        return rate, (cpu_seconds(pid) - before) / requests * 1e6

    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        services = {}
        for name, src, env in (("A", args.a_src, args.a_env), ("B", args.b_src, args.b_env)):
            port = free_port()
            saved = dict(os.environ)
            os.environ.update(dict(pair.split("=", 1) for pair in env.split(",") if pair))
            if src:
                os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, saved.get("PYTHONPATH")]))
            try:
                proc = stack.enter_context(
                    server(audit_command(f"sqlite:///{folder}/{name}.db", port, args.audit_arg), args.server_cpu, port)
                )
            finally:
                os.environ.clear()
                os.environ.update(saved)
            services[name] = (port, proc.pid)
            run(port, proc.pid, 2)  # warm up
        for number in range(args.rounds):
            for name in ("A", "B") if number % 2 == 0 else ("B", "A"):
                results[name].append(run(*services[name], args.seconds))
    print(
        f"# {args.script}, {args.conns} conns, {args.rounds} rounds of {args.seconds}s, server on CPU {args.server_cpu}"
    )
    for name in ("A", "B"):
        rates, cpus = [r for r, _ in results[name]], [c for _, c in results[name]]
        print(
            f"{name}: {statistics.median(rates):8,.0f} ev/s median ({min(rates):,.0f}-{max(rates):,.0f}); "
            f"server CPU {statistics.median(cpus):.1f} us/event median ({min(cpus):.1f}-{max(cpus):.1f})"
        )
    ratios = [a / b for (_, a), (_, b) in zip(results["A"], results["B"], strict=True)]
    print(f"CPU A/B per round: median {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    rates = [b / a for (a, _), (b, _) in zip(results["A"], results["B"], strict=True)]
    print(f"ev/s B/A per round: median {statistics.median(rates):.3f} ({min(rates):.3f}-{max(rates):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
