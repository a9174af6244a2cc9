"""CPU time of processes, for the load test's report (Linux: read from /proc).

  cpu_usage.py snapshot FILE        every process's pid, name and CPU time so far, as JSON
  cpu_usage.py run FILE -- CMD ...  runs CMD; writes the CPU seconds it and its children
                                    used (they are gone before a snapshot could read them)
                                    and exits with CMD's status
"""
import json
import os
import resource
import subprocess
import sys


def snapshot():
    hz = os.sysconf("SC_CLK_TCK")
    processes = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # The name is in parentheses and may contain spaces; the fields after it are fixed.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])
        processes[pid] = {"name": name, "cpu_s": (utime + stime) / hz}
    return processes


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "snapshot":
        with open(path, "w") as f:
            json.dump(snapshot(), f)
    elif mode == "run":
        command = sys.argv[sys.argv.index("--") + 1 :]
        status = subprocess.call(command)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(path, "w") as f:
            json.dump({"cpu_s": usage.ru_utime + usage.ru_stime}, f)
        sys.exit(status if status >= 0 else 128 - status)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
