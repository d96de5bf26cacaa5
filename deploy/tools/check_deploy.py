#!/usr/bin/env python3
"""Checks the files of deploy/ with what Debian 12 packages; scripts/check-deploy.sh runs it.

  - Prometheus: `promtool check rules` and `promtool check config` on deploy/prometheus/ and on
    the Compose project's Prometheus, laid out as compose.yaml mounts it.
  - compose.yaml: `docker-compose config` (Debian's Compose 1.29, no daemon needed) with and
    without the secrets; the services, volumes, health checks, read-only mounts and secrets it
    must have; `haproxy -c` on the load balancer's config, whose servers must be the gateway
    services; the Grafana provisioning against the mounted dashboard; the gateway config, laid
    out as mounted, loaded by the real `switchyard check-config`.
  - The Helm chart: rendered by deploy/tools/helm-render (Go's text/template with Sprig, as
    Helm) with several value sets; the manifests' kinds, names, selectors, probes, security
    context and checksum; its ConfigMap loaded by `switchyard check-config` with its Secret's
    values as the environment.
  - The Dockerfiles: the build steps are the project's scripts, the runtime stage is non-root
    with a health check, every COPY source exists; the CUDA build stage lists every -dev
    package of scripts/install-deps.sh; deploy/docker/runtime-packages.sh on build/switchyard.

Not checked here (no Docker daemon, no Kubernetes API server, no registry): building and
running the images, `docker compose up`, `helm install` against a cluster, the Kubernetes
schemas of the manifests beyond the fields named above.

  python3 deploy/tools/check_deploy.py --switchyard build/switchyard --helm-render BIN
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
CHART = os.path.join(DEPLOY, "helm", "switchyard")

failures = []
passed = 0


def check(ok, what):
    """Records one check; a failed one is listed at the end and fails the run."""
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)
    return ok


def run(cmd, env=None, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


def run_ok(cmd, what, env=None, cwd=None):
    r = run(cmd, env=env, cwd=cwd)
    if not check(r.returncode == 0, f"{what}: {' '.join(cmd)} exited {r.returncode}"):
        print(r.stdout + r.stderr, file=sys.stderr)
    return r


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def fake_sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


# The environment the gateway config reads, with placeholder secrets.
def gateway_env(values):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    env["HOSTNAME"] = "3f2a9c1d7e4b"  # what Docker and Kubernetes set in every container
    env.update(values)
    return env


def check_config(switchyard, config_dir, env, what):
    """Loads <config_dir>/switchyard.yaml with the real binary, as a replica would."""
    if not switchyard:
        return
    run_ok([switchyard, "check-config", "--config", os.path.join(config_dir, "switchyard.yaml")],
           what, env=env)


# --- Prometheus -----------------------------------------------------------------------------

def check_prometheus():
    prom = os.path.join(DEPLOY, "prometheus")
    run_ok(["promtool", "check", "rules", "alerts.yml"], "alert rules", cwd=prom)
    run_ok(["promtool", "check", "config", "prometheus.yml"], "Prometheus config", cwd=prom)


# --- Compose --------------------------------------------------------------------------------

def bind_mounts(service):
    """(source path on this machine, target, read-only) of a service's bind mounts."""
    out = []
    for v in service.get("volumes", []):
        if not isinstance(v, str):
            check(False, f"compose volume {v!r}: use the short form SOURCE:TARGET[:ro]")
            continue
        parts = v.split(":")
        if not parts[0].startswith("."):
            continue  # a named volume
        out.append((os.path.normpath(os.path.join(DEPLOY, parts[0])), parts[1],
                    len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def named_volumes(service):
    return [v.split(":")[0] for v in service.get("volumes", [])
            if isinstance(v, str) and not v.startswith(".")]


def lay_out(service, prefix, tmp):
    """Copies the service's bind mounts under `prefix` into tmp, as the container sees them."""
    for src, target, _ in bind_mounts(service):
        if target.startswith(prefix) and os.path.isfile(src):
            dst = os.path.join(tmp, target.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)
    return os.path.join(tmp, prefix.lstrip("/"))


def compose_env(service):
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def check_compose(switchyard):
    path = os.path.join(DEPLOY, "compose.yaml")
    with open(path) as f:
        text = f.read()
    compose = yaml.safe_load(text)
    services = compose.get("services", {})
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name in ("postgres", "lb", "prometheus", "grafana"):
        check(name in services, f"compose.yaml has a `{name}` service")
    gateways = sorted(n for n, s in services.items()
                      if s.get("image", "").startswith("switchyard") or "build" in s)
    check(len(gateways) >= 2, f"compose.yaml runs at least two gateway replicas (has {gateways})")

    for name, service in services.items():
        for src, target, ro in bind_mounts(service):
            check(os.path.exists(src), f"{name}: the mounted {os.path.relpath(src, ROOT)} exists")
            check(ro, f"{name}: {target} is mounted read-only")
        for vol in named_volumes(service):
            check(vol in declared_volumes, f"{name}: volume `{vol}` is declared under volumes:")

    pg = services.get("postgres", {})
    check(str(pg.get("image", "")).startswith("postgres:15"), "postgres runs PostgreSQL 15")
    check("healthcheck" in pg, "postgres has a health check")
    check(any(v.endswith(":/var/lib/postgresql/data") for v in pg.get("volumes", [])),
          "postgres keeps its data in a volume")

    data_volumes = []
    for name in gateways:
        gw = services[name]
        build = gw.get("build", {})
        dockerfile = os.path.join(DEPLOY, build.get("context", "."), build.get("dockerfile", ""))
        check(os.path.isfile(dockerfile), f"{name} builds from an existing Dockerfile")
        env = compose_env(gw)
        url = str(env.get("SWITCHYARD_LEDGER_URL", ""))
        check(url.startswith("postgresql://") and "@postgres:" in url,
              f"{name}: the ledger is the `postgres` service ({url or 'no SWITCHYARD_LEDGER_URL'})")
        dep = gw.get("depends_on", {})
        check(isinstance(dep, dict) and dep.get("postgres", {}).get("condition") == "service_healthy",
              f"{name} starts once postgres is healthy")
        check(gw.get("stop_grace_period") is not None, f"{name} has a stop_grace_period")
        data_volumes += [v for v in gw.get("volumes", []) if v.endswith(":/var/lib/switchyard")]
    check(len(set(data_volumes)) == len(gateways), "each gateway replica has its own data volume")

    # Secrets: only from the environment file, every one named in .env.example.
    example = os.path.join(DEPLOY, ".env.example")
    with open(example) as f:
        example_values = dict(l.rstrip("\n").split("=", 1) for l in f
                              if re.match(r"^[A-Z_][A-Z0-9_]*=", l))
    example_keys = set(example_values)
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    check(used <= example_keys, f".env.example names every variable of compose.yaml "
          f"(missing: {sorted(used - example_keys)})")
    if os.path.isdir(os.path.join(ROOT, ".git")):
        r = run(["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT)
        check(r.returncode == 0, "git ignores deploy/.env (the secrets)")

    with tempfile.TemporaryDirectory() as tmp:
        # Compose itself (Debian's docker-compose, which needs no daemon for `config`): the
        # file against its schema, with .env.example's variables filled in, and the message
        # naming the missing secret without them.
        env_file = os.path.join(tmp, "compose.env")
        with open(env_file, "w") as f:
            for key, value in sorted(example_values.items()):
                f.write(f"{key}={value or 'placeholder-' + key.lower()}\n")
        compose_cmd = ["docker-compose", "--project-directory", DEPLOY, "-f", path]
        run_ok(compose_cmd + ["--env-file", env_file, "config", "-q"], "docker-compose config")
        empty = os.path.join(tmp, "empty.env")
        open(empty, "w").close()
        r = run(compose_cmd + ["--env-file", empty, "config", "-q"],
                env={k: v for k, v in os.environ.items() if k not in example_keys})
        check(r.returncode != 0 and "deploy/.env" in r.stderr,
              "docker-compose without deploy/.env stops, naming the missing secret")

        # HAProxy: a valid config whose servers are exactly the gateway services.
        lb = services.get("lb", {})
        cfg = lay_out(lb, "/usr/local/etc/haproxy", os.path.join(tmp, "lb"))
        cfg = os.path.join(cfg, "haproxy.cfg")
        if check(os.path.isfile(cfg), "lb mounts haproxy.cfg"):
            run_ok(["haproxy", "-c", "-q", "-f", cfg], "HAProxy config")
            with open(cfg) as f:
                servers = re.findall(r"^\s*server\s+\S+\s+([\w.-]+):(\d+)", f.read(), re.M)
            check(sorted(h for h, _ in servers) == gateways and all(p == "8080" for _, p in servers),
                  f"HAProxy balances over the gateway services {gateways} (has {servers})")
        check(any(str(p).endswith(":8080") for p in lb.get("ports", [])),
              "lb publishes the gateways' port 8080")

        # Prometheus: valid with the alert rules beside it, scraping every replica.
        prom = lay_out(services.get("prometheus", {}), "/etc/prometheus", os.path.join(tmp, "p"))
        prom_cfg = os.path.join(prom, "prometheus.yml")
        if check(os.path.isfile(prom_cfg), "prometheus mounts prometheus.yml"):
            run_ok(["promtool", "check", "config", "prometheus.yml"], "Compose Prometheus config",
                   cwd=prom)
            cfg = load_yaml(prom_cfg)
            check(cfg.get("rule_files") and os.path.isfile(os.path.join(prom, cfg["rule_files"][0])),
                  "Compose Prometheus loads the alert rules it mounts")
            targets = sorted(t for sc in cfg.get("scrape_configs", [])
                             for st in sc.get("static_configs", []) for t in st.get("targets", []))
            check(targets == [f"{g}:8080" for g in gateways],
                  f"Prometheus scrapes every gateway replica (targets {targets})")

        # Grafana: the data source is the prometheus service; the dashboard lies where the
        # provider looks.
        grafana = services.get("grafana", {})
        prov = lay_out(grafana, "/etc/grafana/provisioning", os.path.join(tmp, "g"))
        ds = load_yaml(os.path.join(prov, "datasources", "switchyard.yaml")) or {}
        urls = [d.get("url") for d in ds.get("datasources", [])]
        check("http://prometheus:9090" in urls, f"Grafana's data source is the prometheus service {urls}")
        check(any(d.get("isDefault") for d in ds.get("datasources", [])),
              "Grafana's Prometheus is the default data source (the dashboard's `datasource`)")
        dash = load_yaml(os.path.join(prov, "dashboards", "switchyard.yaml")) or {}
        paths = [p.get("options", {}).get("path") for p in dash.get("providers", [])]
        mounted = [(src, t) for src, t, _ in bind_mounts(grafana) if t.endswith(".json")]
        check(any(os.path.dirname(t) in paths for _, t in mounted),
              f"the dashboard JSON is mounted in a provisioned folder {paths}")
        for src, _ in mounted:
            with open(src) as f:
                check(bool(json.load(f).get("panels")), f"{os.path.relpath(src, ROOT)} is a dashboard")

        # The gateway config as the replicas mount it, loaded by the real binary.
        if gateways:
            conf = lay_out(services[gateways[0]], "/etc/switchyard", os.path.join(tmp, "gw"))
            check_config(switchyard, conf, gateway_env({
                "SWITCHYARD_LEDGER_URL": "postgresql://switchyard:pw@postgres:5432/switchyard",
                "SWITCHYARD_ADMIN_KEY_SHA256": fake_sha256("admin"),
                "SWITCHYARD_TEAM_KEY_SHA256": fake_sha256("team"),
            }), "Compose gateway config")


# --- Helm -----------------------------------------------------------------------------------

def render(helm_render, *args, expect_ok=True):
    r = run([helm_render, *args, CHART])
    if expect_ok and not check(r.returncode == 0, f"helm-render {' '.join(args)} renders"):
        print(r.stderr, file=sys.stderr)
        return []
    if not expect_ok:
        return r
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return docs


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d.get("kind"), []).append(d)
    return out


def check_manifests(docs, switchyard):
    kinds = by_kind(docs)
    for kind in ("Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
                 "ServiceMonitor"):
        check(len(kinds.get(kind, [])) == 1, f"the chart renders one {kind}")
    for d in docs:
        meta = d.get("metadata", {})
        check(d.get("apiVersion") and meta.get("name") and meta.get("labels"),
              f"{d.get('kind')} has apiVersion, metadata.name and labels")
    if not all(kinds.get(k) for k in ("Deployment", "Service", "ConfigMap", "Secret")):
        return
    dep, svc, cm, secret = (kinds[k][0] for k in ("Deployment", "Service", "ConfigMap", "Secret"))
    spec = dep["spec"]
    pod = spec["template"]
    selector = spec["selector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    check(selector.items() <= labels.items(), "the Deployment's selector matches its pods")
    check(svc["spec"]["selector"] == selector, "the Service selects the Deployment's pods")
    for kind in ("PodDisruptionBudget",):
        for d in kinds.get(kind, []):
            check(d["spec"]["selector"]["matchLabels"] == selector, f"the {kind} selects the pods")
    for sm in kinds.get("ServiceMonitor", []):
        check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
              "the ServiceMonitor selects the Service")
        check(sm["spec"]["endpoints"][0].get("path") == "/metrics", "the ServiceMonitor scrapes /metrics")
    check("checksum/config" in pod["metadata"].get("annotations", {}),
          "the pods carry a checksum of the config")

    podspec = pod["spec"]
    c = podspec["containers"][0]
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz")
    check(bool(c.get("resources", {}).get("requests")), "the container requests resources")
    sc = podspec.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "the pods run as non-root")
    check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
          "no privilege escalation")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("http") == 8080 and "8080" in c.get("args", []),
          "the container serves port 8080, named http")
    check(any(e.get("secretRef", {}).get("name") == secret["metadata"]["name"]
              for e in c.get("envFrom", [])), "the container's environment is the Secret")
    volumes = {v["name"]: v for v in podspec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    cfg_mount = mounts.get("/etc/switchyard", {})
    check(cfg_mount.get("readOnly") is True and
          volumes.get(cfg_mount.get("name"), {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
          "the ConfigMap is mounted read-only at /etc/switchyard")
    check(sorted(cm.get("data", {})) == ["policies.yaml", "pricing.yaml", "switchyard.yaml"],
          "the ConfigMap holds switchyard.yaml, policies.yaml and pricing.yaml")

    with tempfile.TemporaryDirectory() as tmp:
        for name, text in cm.get("data", {}).items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        check_config(switchyard, tmp, gateway_env(secret.get("stringData", {})), "Helm chart config")


def check_helm(helm_render, switchyard):
    with open(os.path.join(CHART, "files", "pricing.yaml")) as a, \
            open(os.path.join(ROOT, "configs", "pricing.yaml")) as b:
        check(a.read() == b.read(), "the chart's files/pricing.yaml is configs/pricing.yaml")
    chart = load_yaml(os.path.join(CHART, "Chart.yaml"))
    check(chart.get("apiVersion") == "v2" and chart.get("name") == "switchyard", "Chart.yaml is a v2 chart")

    ci = os.path.join(CHART, "ci", "test-values.yaml")
    docs = render(helm_render, "-f", ci)
    check_manifests(docs, switchyard)

    with tempfile.TemporaryDirectory() as tmp:
        def values(text):
            path = os.path.join(tmp, f"v{len(os.listdir(tmp))}.yaml")
            with open(path, "w") as f:
                f.write(text)
            return path

        def checksum(docs):
            dep = by_kind(docs).get("Deployment", [{}])[0]
            return dep.get("spec", {}).get("template", {}).get("metadata", {}) \
                      .get("annotations", {}).get("checksum/config")

        # Without the required secrets, rendering stops and says which value is missing.
        r = render(helm_render, expect_ok=False)
        check(r.returncode != 0 and "SWITCHYARD_LEDGER_URL is required" in r.stderr,
              "default values without secrets fail, naming secret.values.SWITCHYARD_LEDGER_URL")
        # An existing Secret: none is created and the pods read that one.
        docs2 = render(helm_render, "-f", values("secret: {existingSecret: my-keys}\n"))
        kinds = by_kind(docs2)
        check("Secret" not in kinds, "with secret.existingSecret the chart creates no Secret")
        dep = kinds.get("Deployment", [{}])[0]
        env_from = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("envFrom", [])
        check(env_from == [{"secretRef": {"name": "my-keys"}}], "the pods read secret.existingSecret")
        check("PodDisruptionBudget" in kinds and "ServiceMonitor" not in kinds,
              "the ServiceMonitor is optional (off by default), the PodDisruptionBudget on")
        # A changed config changes the checksum, so the pods roll.
        docs3 = render(helm_render, "-f", ci, "-f", values("config:\n  policies: |\n    teams: {}\n"))
        check(checksum(docs) and checksum(docs3) and checksum(docs) != checksum(docs3),
              "a changed config file changes the pods' checksum/config")
        cm3 = by_kind(docs3).get("ConfigMap", [{}])[0]
        check(cm3.get("data", {}).get("policies.yaml", "").strip() == "teams: {}",
              "config.policies replaces the chart's policies.yaml")
        # Real weights from a volume.
        docs4 = render(helm_render, "-f", ci, "-f",
                       values("model: {existingClaim: gemma, subPath: gemma-3-1b-it}\n"))
        pod = by_kind(docs4).get("Deployment", [{}])[0].get("spec", {}).get("template", {}).get("spec", {})
        env = {e["name"]: e.get("value") for e in pod.get("containers", [{}])[0].get("env", [])}
        check(env.get("SWITCHYARD_MODEL_DIR") == "/models/gemma-3-1b-it",
              "model.existingClaim sets SWITCHYARD_MODEL_DIR")
        check(any(v.get("persistentVolumeClaim", {}).get("claimName") == "gemma" for v in pod.get("volumes", [])),
              "model.existingClaim mounts the claim")
        notes = run([helm_render, "--notes", "-f", ci, CHART])
        check(notes.returncode == 0 and "port-forward" in notes.stdout, "NOTES.txt renders")


# --- Dockerfiles ----------------------------------------------------------------------------

def stages(dockerfile):
    """[(FROM line, [instructions])] with continuation lines joined."""
    with open(dockerfile) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def check_dockerfile(path, base_pattern):
    name = os.path.relpath(path, ROOT)
    st = stages(path)
    if not check(len(st) >= 2, f"{name} is multi-stage"):
        return st
    check(all(re.search(base_pattern, f) for f, _ in st), f"{name} builds on {base_pattern}")
    for _, instrs in st:
        for ins in instrs:
            if ins.upper().startswith("COPY ") and "--from=" not in ins:
                for src in ins.split()[1:-1]:
                    check(os.path.exists(os.path.join(ROOT, src)), f"{name}: COPY source {src} exists")
    final = st[-1][1]
    users = [i.split()[1] for i in final if i.upper().startswith("USER ")]
    check(users and users[-1].split(":")[0] not in ("0", "root"), f"{name} runs as a non-root user")
    check(any(i.upper().startswith("EXPOSE ") and "8080" in i for i in final), f"{name} exposes 8080")
    check(any(i.upper().startswith("HEALTHCHECK ") and "/healthz" in i for i in final),
          f"{name} has a health check on /healthz")
    build = " ".join(st[0][1])
    check("deploy/docker/runtime-packages.sh" in build, f"{name} derives its runtime packages")
    return st


def install_deps_packages():
    with open(os.path.join(ROOT, "scripts", "install-deps.sh")) as f:
        text = f.read()
    m = re.search(r"^packages=\((.*?)^\)", text, re.S | re.M)
    words = re.sub(r"#[^\n]*", "", m.group(1)).split() if m else []
    return words


def check_dockerfiles(switchyard):
    st = check_dockerfile(os.path.join(DEPLOY, "Dockerfile"), r"DEBIAN_IMAGE|debian:12")
    build = " ".join(st[0][1]) if st else ""
    check("scripts/install-deps.sh" in build and "scripts/npm-deps.sh" in build,
          "deploy/Dockerfile installs with the project's own scripts")
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        check("ARG DEBIAN_IMAGE=debian:12" in f.read(), "deploy/Dockerfile is on Debian 12")

    st = check_dockerfile(os.path.join(DEPLOY, "Dockerfile.cuda"), r"nvidia/cuda:")
    build = " ".join(st[0][1]) if st else ""
    check("-DSY_CUDA=on" in build, "deploy/Dockerfile.cuda builds with -DSY_CUDA=on")
    with open(os.path.join(DEPLOY, "Dockerfile.cuda")) as f:
        m = re.search(r"# build-packages: begin(.*?)# build-packages: end", f.read(), re.S)
    listed = set(m.group(1).split()) if m else set()
    needed = {p for p in install_deps_packages() if p.endswith("-dev") and not p.startswith(("libclang-rt", "golang-"))}
    check(bool(needed) and needed <= listed,
          f"deploy/Dockerfile.cuda installs every -dev package of install-deps.sh "
          f"(missing: {sorted(needed - listed)})")

    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignored = f.read().split()
    check("build*/" in ignored and "node_modules/" in ignored,
          ".dockerignore keeps builds and node_modules out of the context")

    if switchyard:
        script = os.path.join(DEPLOY, "docker", "runtime-packages.sh")
        r = run_ok([script, switchyard], "runtime-packages.sh")
        pkgs = r.stdout.split()
        check("libc6" in pkgs and len(pkgs) >= 3, f"runtime packages of {switchyard}: {pkgs}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switchyard", help="the built gateway binary (its check-config loads the configs)")
    ap.add_argument("--helm-render", required=True, help="the built deploy/tools/helm-render")
    args = ap.parse_args()
    switchyard = os.path.abspath(args.switchyard) if args.switchyard else None
    if switchyard and not os.access(switchyard, os.X_OK):
        print(f"check_deploy: {switchyard} is not an executable", file=sys.stderr)
        return 2

    check_prometheus()
    check_compose(switchyard)
    check_helm(os.path.abspath(args.helm_render), switchyard)
    check_dockerfiles(switchyard)

    print(f"deploy: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
