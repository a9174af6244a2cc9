#!/usr/bin/env python3
"""Cross-checks docker-compose.yml against what the code and the Dockerfile say, without a
Docker engine. Reads the resolved compose model (`docker compose config --format json`) on
stdin. Stdlib only. Exits 1 listing every problem found.

Checked:
- each Orderflow service runs a binary that the workspace builds and the Dockerfile copies;
- each variable set on an Orderflow service is one its binary reads (config.rs);
- every ${VAR} the compose file interpolates is documented in .env.example;
- the API's listen port is the one published and the one the Dockerfile exposes, and its
  health check uses a subcommand the binary has;
- depends_on: service_healthy only on services that have a health check;
- workers can be scaled (no container_name, no fixed host ports);
- the Dockerfile's COPY sources exist and are not excluded by .dockerignore; the runtime
  stage is not a build image and runs as a non-root user;
- the k6 service mounts load-tests/ and runs a script that exists there;
- the monitoring profile: every file Prometheus and Grafana mount exists, Prometheus
  scrapes the API's port and each worker service on its METRICS_ADDR port, and every
  metric the Grafana dashboard queries is one the code exports.
"""
import fnmatch
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
problems = []


def problem(message):
    problems.append(message)


def config_variables():
    """{config struct: variables its from_env reads} from services/runtime/src/config/."""
    source = "\n".join(
        path.read_text() for path in sorted((ROOT / "services/runtime/src/config").glob("*.rs"))
    )
    found = {}
    for match in re.finditer(r"^impl (\w+) \{(.*?)^\}", source, re.S | re.M):
        # `var`, `optional_var`, and the small helpers built on them (`rate`, `millis`, ...).
        names = re.findall(r'\b(?:optional_var|var|rate|millis|timeout_ms)\(\s*"([A-Z][A-Z0-9_]*)"', match.group(2))
        if names:
            found.setdefault(match.group(1), set()).update(names)
    return found


def binary_variables():
    """{binary: variables it reads}, following each main.rs's `Config::from_env` calls."""
    structs = config_variables()
    telemetry = (ROOT / "services/runtime/src/telemetry.rs").read_text()
    logging = {"RUST_LOG"} if "from_default_env" in telemetry else set()
    binaries = {}
    for manifest in sorted(ROOT.glob("services/*/Cargo.toml")):
        for name in re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', manifest.read_text()):
            main = (manifest.parent / "src/main.rs").read_text()
            used = set(re.findall(r"(\w+)::from_env\(", main))
            unknown = used - structs.keys()
            if unknown:
                problem(f"{name}: cannot find the variables of {sorted(unknown)} in services/runtime/src/config/")
            binaries[name] = set().union(*(structs.get(s, set()) for s in used)) | logging
    return binaries


def dockerfile():
    """The Dockerfile as (instruction, arguments) per stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append({"from": arguments, "lines": []})
        elif stages:
            stages[-1]["lines"].append((instruction, arguments.strip()))
    return stages


def dockerignore():
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]


def check_dockerfile(stages):
    """Returns the binaries the runtime image carries and the ports it exposes."""
    if len(stages) < 2:
        problem("Dockerfile: expected a multi-stage build (build, then runtime)")
        return set(), set()
    ignored = dockerignore()
    for stage in stages:
        for instruction, arguments in stage["lines"]:
            if instruction != "COPY" or "--from=" in arguments:
                continue
            sources = [a for a in arguments.split() if not a.startswith("--")][:-1]
            for source in sources:
                if not (ROOT / source).exists():
                    problem(f"Dockerfile: COPY source {source} does not exist")
                if any(fnmatch.fnmatch(source, pattern) or source.startswith(pattern + "/") for pattern in ignored):
                    problem(f"Dockerfile: COPY source {source} is excluded by .dockerignore")
    # The dependency layer must see every workspace member's manifest, or cargo fails.
    workspace = (ROOT / "Cargo.toml").read_text()
    members = re.findall(r'"(services/[^"]+)"', workspace.split("[workspace.package]")[0])
    copied_manifests = {
        a for stage in stages for i, args in stage["lines"] if i == "COPY" for a in args.split()
    }
    for member in members:
        if f"{member}/Cargo.toml" not in copied_manifests:
            problem(f"Dockerfile: the dependency layer does not copy {member}/Cargo.toml")
    runtime = stages[-1]
    if re.search(r"\b(rust|cargo|gcc|buildpack)", runtime["from"]):
        problem(f"Dockerfile: the runtime stage starts from a build image ({runtime['from']})")
    for instruction, arguments in runtime["lines"]:
        if instruction == "RUN" and re.search(r"apt-get install[^&]*\b(gcc|build-essential|cargo|rustc|make)\b", arguments):
            problem("Dockerfile: the runtime stage installs build tools")
    users = [a for i, a in runtime["lines"] if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the runtime stage must end with a non-root USER")
    copied = set()
    for instruction, arguments in runtime["lines"]:
        if instruction == "COPY" and "--from=" in arguments:
            copied.update(Path(a).name for a in arguments.split()[1:-1] if "target/release/" in a)
    exposed = {
        int(port.split("/")[0])
        for instruction, arguments in runtime["lines"]
        if instruction == "EXPOSE"
        for port in arguments.split()
    }
    for instruction, arguments in runtime["lines"]:
        match = re.search(r"API_ADDR=\S*:(\d+)", arguments) if instruction == "ENV" else None
        if match and int(match.group(1)) not in exposed:
            problem(f"Dockerfile: API_ADDR's port {match.group(1)} is not EXPOSEd")
    return copied, exposed


def check_env_example(compose_text):
    example = ROOT / ".env.example"
    if not example.exists():
        problem(".env.example is missing")
        return
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(), re.M))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    for name in sorted(used - documented):
        problem(f".env.example does not document {name}, which docker-compose.yml uses")


def main():
    model = json.load(sys.stdin)
    services = model.get("services", {})
    binaries = binary_variables()
    copied, exposed = check_dockerfile(dockerfile())
    check_env_example((ROOT / "docker-compose.yml").read_text())

    for name, service in sorted(services.items()):
        command = service.get("command") or []
        binary = command[0] if command else None
        if binary in binaries:
            if binary not in copied:
                problem(f"{name}: runs {binary}, which the Dockerfile does not copy into the image")
            for variable in sorted(service.get("environment", {})):
                if variable not in binaries[binary]:
                    problem(f"{name}: sets {variable}, which {binary} never reads")
            if name.endswith("-worker"):
                if service.get("container_name"):
                    problem(f"{name}: a container_name prevents --scale")
                if any(p.get("published") for p in service.get("ports", [])):
                    problem(f"{name}: a fixed host port prevents --scale")
        for dependency, condition in (service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy" and not services.get(dependency, {}).get("healthcheck"):
                problem(f"{name}: waits for {dependency} to be healthy, which has no health check")

    api = services.get("order-api")
    if not api:
        problem("docker-compose.yml has no order-api service")
    else:
        addr = api.get("environment", {}).get("API_ADDR", "")
        port = int(addr.rsplit(":", 1)[1]) if ":" in addr else None
        targets = {int(p["target"]) for p in api.get("ports", [])}
        if port is None or port not in targets:
            problem(f"order-api: listens on {addr!r} but publishes container ports {sorted(targets)}")
        if port is not None and port not in exposed:
            problem(f"order-api: port {port} is not EXPOSEd by the Dockerfile ({sorted(exposed)})")
        test = (api.get("healthcheck") or {}).get("test", [])
        main_rs = (ROOT / "services/order-api/src/main.rs").read_text()
        if len(test) < 3 or test[1] != "order-api" or f'Some("{test[2]}")' not in main_rs:
            problem(f"order-api: health check {test} is not an order-api subcommand")

    k6 = services.get("k6")
    if k6:
        mounts = {v["target"]: Path(v["source"]) for v in k6.get("volumes", []) if v.get("type") == "bind"}
        script = next((a for a in k6.get("command", []) if a.endswith(".js")), None)
        mount = next((t for t in mounts if script and script.startswith(t + "/")), None)
        if not script or not mount:
            problem("k6: its script is not under a mounted folder")
        else:
            local = mounts[mount] / script[len(mount) + 1:]
            if not local.exists():
                problem(f"k6: runs {script}, but {local} does not exist")

    check_monitoring(services)

    if problems:
        print("docker-compose.yml / Dockerfile problems:", file=sys.stderr)
        for message in problems:
            print(f"  - {message}", file=sys.stderr)
        return 1
    print(f"compose cross-checks: {len(services)} services consistent with the code and the Dockerfile")
    return 0


def exported_metrics():
    """Metric names the code registers, with the suffixes Prometheus derives from them."""
    names = set()
    for source in ROOT.glob("services/*/src/**/*.rs"):
        names.update(re.findall(r'"(orderflow_[a-z_]+)"', source.read_text()))
    derived = {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_count", "_sum")}
    return names | derived


def check_monitoring(services):
    prometheus, grafana = services.get("prometheus"), services.get("grafana")
    if not prometheus or not grafana:
        problem("the monitoring profile needs a prometheus and a grafana service")
        return
    for service in (prometheus, grafana):
        for volume in service.get("volumes", []):
            if volume.get("type") == "bind" and not Path(volume["source"]).exists():
                problem(f"monitoring: {volume['source']} is mounted but does not exist")
    config = (ROOT / "monitoring/prometheus.yml").read_text()
    api_port = services.get("order-api", {}).get("environment", {}).get("API_ADDR", "").rsplit(":", 1)[-1]
    if f"order-api:{api_port}" not in config:
        problem(f"monitoring/prometheus.yml does not scrape order-api:{api_port}")
    for name, service in services.items():
        if name.endswith("-worker"):
            port = service.get("environment", {}).get("METRICS_ADDR", "").rsplit(":", 1)[-1]
            if f'"{name}"' not in config or f"port: {port}" not in config:
                problem(f"monitoring/prometheus.yml does not scrape {name} on its metrics port {port}")
    exported = exported_metrics()
    for dashboard in sorted((ROOT / "monitoring/grafana/dashboards").glob("*.json")):
        try:
            model = json.loads(dashboard.read_text())
        except ValueError as error:
            problem(f"{dashboard.name}: not JSON ({error})")
            continue
        queries = [t.get("expr", "") for p in model.get("panels", []) for t in p.get("targets", [])]
        if not queries:
            problem(f"{dashboard.name}: no panel queries anything")
        for query in queries:
            for metric in sorted(set(re.findall(r"\b(orderflow_[a-z_]+)", query)) - exported):
                problem(f"{dashboard.name}: queries {metric}, which no service exports")


if __name__ == "__main__":
    sys.exit(main())
