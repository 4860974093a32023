"""A rolling update, a rollback and a stalled update behind a real load balancer, under steady
load: no request may fail. Run by .ci/run; figures in RELIABILITY.md ("Rolling updates").

  python3 scripts/reliability/rolling_update.py [--lb tcp|http] [--lb-signal endpoints|health]
      [--propagation S] [--min-ready-seconds S]    (the defaults are what CI runs; the others
                                                   are the experiments of RELIABILITY.md)

haproxy (Debian's package) health-checks `/ready` on every gateway (inter 1 s, fall 2, rise 2) and
balances `target/debug/loadtest` closed-loop traffic (4 clients) over them, with no retries: a
request it sends to a process that does not serve fails visibly, as through a Kubernetes Service.
`--lb tcp` (the default) balances connections, as the production overlay's NLB and kube-proxy do:
a client's keep-alive connection stays on its pod until the pod closes it; `--lb http` balances
each request, as an ingress or ALB does.

Two gateway processes (the built-in model, MAX_BATCH_SIZE 2) stand for the pods. The script plays
the Deployment controller and the kubelet with the timings of the rendered production Deployment
(deploy/k8s/overlays/production): maxSurge 1 / maxUnavailable 0, the startup probe's period,
minReadySeconds, the preStop sleep, terminationGracePeriodSeconds, GRACEFUL_SHUTDOWN_TIMEOUT:

- a new pod starts; the kubelet probes /ready at the startup probe's period; ready, and then
  available after minReadySeconds, it lets the controller delete one old pod and create the next
  new one (terminating pods do not count against maxSurge);
- deleting a pod: its endpoint leaves the Service at once and the load balancer learns of it after
  a propagation delay (--propagation, 1 s: haproxy's `set server ... state drain`, which keeps
  established connections, as conntrack does); meanwhile the preStop sleep runs and the process
  still serves; then SIGTERM (the gateway turns not-ready, stops accepting, drains), then exit, or
  SIGKILL at terminationGracePeriodSeconds. `--lb-signal health` leaves out the endpoint signal, so
  the load balancer learns only from its /ready checks (an LB that health-checks targets and is
  told nothing else): that shows what the preStop pause does and does not cover.

Phases: baseline; rolling update 1.0.0 -> 1.1.0; rollback 1.1.0 -> 1.0.0; a stalled update to a
1.2.0 that never becomes ready (MODEL_PATH is a FIFO nobody writes: the process listens, /health
answers, /ready stays 503), which must stop after the one surge pod, terminate no old pod and take
no traffic, then be undone. Each phase reports requests sent, answered, failed, p50/p99/max, each
pod's share, the fewest pods in the load balancer's rotation (UP and not draining: it must stay 2,
maxUnavailable 0 as the load balancer sees it) and the slowest /ready check. Exit 1 if any request
failed, the rotation fell below 2, or the stalled update touched an old pod or sent traffic to the
new one.
Builds nothing: `cargo build -p inference-gateway -p loadtest` first (.ci/run does).
"""

import argparse
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import IMAGES, ROOT, free_port, get, start_gateway  # noqa: E402

CHECK = {"inter_s": 1, "fall": 2, "rise": 2}
CLIENTS = 4
LEAD_S, TAIL_S = 3.0, 3.0  # steady traffic before the first and after the last step of a phase
T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def say(msg):
    print(f"[{now():6.1f}s] {msg}", flush=True)


# ---- the Deployment's timings ------------------------------------------------------------------

def deployment_policy():
    out = subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "deploy", "k8s", "overlays", "production")],
                         check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "inference-gateway")
    pod = dep["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "inference-gateway")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "inference-gateway-config")
    ru = dep["spec"]["strategy"]["rollingUpdate"]
    return {
        "maxSurge": ru["maxSurge"], "maxUnavailable": ru["maxUnavailable"],
        "minReadySeconds": dep["spec"].get("minReadySeconds", 0),
        "startup_period_s": c["startupProbe"]["periodSeconds"],
        "readiness": {k: c["readinessProbe"].get(k) for k in ("periodSeconds", "failureThreshold", "timeoutSeconds")},
        "preStop_s": c["lifecycle"]["preStop"]["sleep"]["seconds"],
        "grace_s": pod["terminationGracePeriodSeconds"],
        "drain_s": float(cm["data"]["GRACEFUL_SHUTDOWN_TIMEOUT"]),
        "delay_s": float(cm["data"].get("SHUTDOWN_DELAY_SECONDS", 0)),
    }


# ---- haproxy -----------------------------------------------------------------------------------

class HAProxy:
    def __init__(self, tmp, mode, port, slots):
        self.sock = os.path.join(tmp, "haproxy.sock")
        cfg = os.path.join(tmp, "haproxy.cfg")
        servers = "".join(f"  server {name} 127.0.0.1:{p}\n" for name, p in slots)
        with open(cfg, "w") as f:
            f.write(f"""global
  log stderr format raw local0 info
  stats socket {self.sock} mode 600 level admin
  maxconn 2000
defaults
  mode {mode}
  log global
  option {"httplog" if mode == "http" else "tcplog"}
  option log-health-checks
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 2s
  retries 0
frontend fe
  bind 127.0.0.1:{port}
  default_backend gateways
backend gateways
  balance {"roundrobin" if mode == "http" else "leastconn"}
  option httpchk
  http-check send meth GET uri /ready
  http-check expect status 200
  default-server check inter {CHECK["inter_s"]}s fall {CHECK["fall"]} rise {CHECK["rise"]}
{servers}""")
        subprocess.run(["haproxy", "-c", "-q", "-f", cfg], check=True)
        self.log = open(os.path.join(tmp, "haproxy.log"), "w")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("haproxy did not start; see haproxy.log")
            time.sleep(0.05)

    def cmd(self, line):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.sock)
            s.sendall((line + "\n").encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode()

    def servers(self):
        text = self.cmd("show stat").lstrip("# ")
        return {r["svname"]: r for r in csv.DictReader(io.StringIO(text))
                if r["pxname"] == "gateways" and r["svname"] not in ("FRONTEND", "BACKEND")}

    def set_state(self, name, state):
        self.cmd(f"set server gateways/{name} state {state}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Sampler(threading.Thread):
    """haproxy's view every 0.1 s: which servers are in rotation (UP and not draining)."""

    def __init__(self, lb):
        super().__init__(daemon=True)
        self.lb, self.samples, self.stop_flag = lb, [], threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                rows = self.lb.servers()
                self.samples.append((now(), {n for n, r in rows.items() if r["status"].startswith("UP")}, rows))
            except OSError:
                pass
            time.sleep(0.1)

    def window(self, t0, t1):
        return [s for s in self.samples if t0 <= s[0] <= t1]

    def first_in_rotation(self, name, after):
        return next((t for t, up, _ in self.samples if t >= after and name in up), None)

    def last_in_rotation(self, name):
        return max((t for t, up, _ in self.samples if name in up), default=None)


# ---- pods --------------------------------------------------------------------------------------

class Pod:
    def __init__(self, name, port, version, tmp, policy, model_path=None):
        self.name, self.port, self.version = name, port, version
        self.log_path = os.path.join(tmp, f"{name}.log")
        extra = {"MODEL_PATH": model_path} if model_path else {}
        self.proc = start_gateway(
            ARGS.gateway, port, open(self.log_path, "w"), APP_VERSION=version, LOG_LEVEL="INFO",
            MAX_BATCH_SIZE="2", MAX_QUEUE_SIZE="16", WORKERS="1", ENGINE_THREADS="1", DECODE_THREADS="1",
            ENGINE_SPIN="false", ENABLE_TRACING="false", API_KEYS="",
            GRACEFUL_SHUTDOWN_TIMEOUT=str(policy["drain_s"]),
            SHUTDOWN_DELAY_SECONDS=str(policy["delay_s"]), **extra)
        self.created = now()
        self.ready_at = self.available_at = None
        self.termination = {}

    def ready(self):
        try:
            return get(f"http://127.0.0.1:{self.port}/ready", timeout=2)[0] == 200
        except Exception:  # noqa: BLE001 - 503 raises, so does a refused connection
            return False


def wait_available(pod, policy, deadline_s):
    """The kubelet: the startup probe on /ready at its period; the readiness probe, ticking since
    the container started, marks the pod Ready at its next run, which with equal periods can be
    the same moment (the case that gives the load balancer the least time, taken here); the
    controller counts the pod available minReadySeconds later."""
    period = policy["startup_period_s"]
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if pod.proc.poll() is not None:
            return False
        if pod.ready():
            pod.ready_at = now()
            time.sleep(policy["minReadySeconds"])
            pod.available_at = now()
            return True
        time.sleep(period)
    return False


def terminate(pod, lb, policy, signal_mode, propagation_s, kill_after_s=None):
    """Pod deletion: endpoint removal reaches the LB after propagation_s; preStop sleep; SIGTERM;
    exit or SIGKILL at the grace period; then the pod is gone from the LB altogether."""
    t = pod.termination
    t["deleted"] = now()
    timer = None
    if signal_mode == "endpoints":
        def drain():
            lb.set_state(pod.name, "drain")
            t["lb_drained"] = now()
        timer = threading.Timer(propagation_s, drain)
        timer.start()
    time.sleep(policy["preStop_s"])
    t["sigterm"] = now()
    pod.proc.send_signal(signal.SIGTERM)
    limit = kill_after_s if kill_after_s is not None else policy["grace_s"] - policy["preStop_s"]
    try:
        t["exit_code"] = pod.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        pod.proc.kill()
        pod.proc.wait()
        t["exit_code"] = "SIGKILL"
    t["exited"] = now()
    if timer:
        timer.join()
    lb.set_state(pod.name, "maint")


class Cluster:
    def __init__(self, tmp, lb, slots, policy, args):
        self.tmp, self.lb, self.free, self.policy, self.args = tmp, lb, list(slots), policy, args
        self.pods = []

    def create(self, version, model_path=None):
        name, port = self.free.pop(0)
        pod = Pod(name, port, version, self.tmp, self.policy, model_path)
        self.pods.append(pod)
        say(f"pod {name} ({version}) created")
        return pod

    def delete(self, pod, kill_after_s=None):
        th = threading.Thread(target=terminate, args=(pod, self.lb, self.policy, self.args.lb_signal,
                                                      self.args.propagation, kill_after_s))
        th.start()
        say(f"pod {pod.name} deleted (preStop {self.policy['preStop_s']} s, then SIGTERM)")
        return th

    def rollout(self, old, version, deadline_s, model_path=None):
        """maxSurge 1, maxUnavailable 0: one new pod at a time; an old pod goes only once a new
        one is available. Returns the new pods, and False if the rollout stalled."""
        new, deletions = [], []
        for o in old:
            p = self.create(version, model_path)
            if not wait_available(p, self.policy, deadline_s):
                say(f"pod {p.name} not ready within {deadline_s:.0f} s: the rollout stalls; "
                    f"no old pod is deleted")
                for th in deletions:
                    th.join()
                return new + [p], False
            say(f"pod {p.name} ready at +{p.ready_at - p.created:.1f} s, available")
            deletions.append(self.delete(o))
            new.append(p)
        for th in deletions:
            th.join()
        return new, True


# ---- load --------------------------------------------------------------------------------------

class Load(threading.Thread):
    """Steady closed-loop load: loadtest runs back to back, the first for `seconds`, then 4 s more
    at a time until stop(), so a phase that takes longer than planned is still covered to its end
    (loadtest reports only when it finishes). The counts add up exactly; the phase's p99 is the
    highest p99 of its runs when there were several (no lower than the true one)."""

    def __init__(self, lb_port, seconds, prefix, warmup_s=0):
        super().__init__(daemon=True)
        self.lb_port, self.seconds, self.prefix, self.warmup_s = lb_port, seconds, prefix, warmup_s
        self.reports, self.stop_at = [], None

    def run(self):
        seconds, warmup = self.seconds, self.warmup_s
        while True:
            out = f"{self.prefix}-{len(self.reports)}.json"
            cmd = [ARGS.loadtest, "--url", f"http://127.0.0.1:{self.lb_port}/predict",
                   "--images", os.path.join(IMAGES, "good"), "-c", str(CLIENTS), "-d", f"{seconds:.0f}s",
                   "--warmup", f"{warmup}s", "--threads", "1", "--no-scrape", "--timeout", "30s", "-q", "--json", out]
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            self.reports.append(json.load(open(out)))
            if self.stop_at is not None and now() >= self.stop_at:
                return
            seconds, warmup = 4, 0

    def stop(self, at):
        self.stop_at = at
        self.join()

    def totals(self):
        rs = self.reports
        add = lambda key: {k: sum(r[key].get(k, 0) for r in rs) for r in rs for k in r[key]}  # noqa: E731
        lats = [r["latency_ms"] for r in rs if r["latency_ms"]]
        n = sum(r["ok"] for r in rs) or 1
        return {"sent": sum(r["requests"] for r in rs), "ok": sum(r["ok"] for r in rs),
                "failed": sum(r["errors"] for r in rs), "statuses": add("statuses"), "failures": add("failures"),
                "p50_ms": sum(r["latency_ms"]["p50"] * r["ok"] for r in rs if r["latency_ms"]) / n,
                "p99_ms": max((lat["p99"] for lat in lats), default=0),
                "max_ms": max((lat["max"] for lat in lats), default=0), "runs": len(rs)}


def run_phase(name, cluster, sampler, lb_port, seconds, action, warmup_s=0):
    before = {n: int(r["stot"]) for n, r in cluster.lb.servers().items()}
    say(f"== {name}: {CLIENTS} clients, {seconds:.0f} s planned")
    t0 = now()
    load = Load(lb_port, seconds, os.path.join(cluster.tmp, "load-" + name.split()[0]), warmup_s)
    load.start()
    time.sleep(warmup_s + LEAD_S)
    t_steps = now()
    result = action()
    t_done = now()
    load.stop(t_done + TAIL_S)
    t1 = now()
    r = load.totals()
    after = {n: int(row["stot"]) for n, row in cluster.lb.servers().items()}
    share = {n: after[n] - before.get(n, 0) for n in after if after[n] - before.get(n, 0) > 0}
    window = sampler.window(t0 + 0.5, t1 - 0.5)
    fewest = min((len(up) for _, up, _ in window), default=0)
    short = [t for t, up, _ in window if len(up) < 2]
    short_s = round(max(short) - min(short) + 0.1, 1) if short else 0
    slowest_check = max((int(row["check_duration"] or 0) for _, _, rows in window for row in rows.values()
                         if row["check_status"] == "L7OK"), default=0)
    row = {"phase": name, **r, "answered": sum(r["statuses"].values()), "share": share,
           "fewest_in_rotation": fewest, "below_two_s": short_s, "slowest_ready_check_ms": slowest_check,
           "seconds": round(t1 - t0, 1), "steps_s": round(t_done - t_steps, 1)}
    unit = "requests" if ARGS.lb == "http" else "connections"
    say(f"   {row['seconds']:.0f} s, {r['runs']} loadtest run(s): sent {r['sent']}, answered {row['answered']} "
        f"({r['statuses']}), failed {r['failed']} {r['failures'] or ''}; p50 {r['p50_ms']:.0f} ms, "
        f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms; {unit} per pod {share}; "
        f"fewest pods in rotation {fewest}" + (f" (for {short_s} s)" if short else "")
        + f"; slowest /ready check {slowest_check} ms")
    return row, result


def fmt_termination(p):
    t = p.termination
    parts = [f"{p.name}:"]
    if "lb_drained" in t:
        parts.append(f"LB drained +{t['lb_drained'] - t['deleted']:.1f} s")
    parts.append(f"SIGTERM +{t['sigterm'] - t['deleted']:.1f} s")
    parts.append(f"exit {t['exit_code']} +{t['exited'] - t['deleted']:.1f} s (drain {t['exited'] - t['sigterm']:.2f} s)")
    return " ".join(parts)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateway", default=os.path.join(ROOT, "target", "debug", "inference-gateway"))
    ap.add_argument("--loadtest", default=os.path.join(ROOT, "target", "debug", "loadtest"))
    ap.add_argument("--lb", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--lb-signal", choices=["endpoints", "health"], default="endpoints")
    ap.add_argument("--propagation", type=float, default=1.0,
                    help="seconds from pod deletion until the LB stops sending it new connections")
    ap.add_argument("--stall-deadline", type=float, default=10.0,
                    help="how long the stalled rollout is watched (stands for progressDeadlineSeconds)")
    ap.add_argument("--min-ready-seconds", type=float, default=None,
                    help="instead of the Deployment's minReadySeconds (to see what it is for)")
    ARGS = ap.parse_args()
    policy = deployment_policy()
    if ARGS.min_ready_seconds is not None:
        policy["minReadySeconds"] = ARGS.min_ready_seconds
    say(f"production Deployment: {json.dumps(policy)}")
    problems = []
    if (policy["maxSurge"], policy["maxUnavailable"]) != (1, 0):
        problems.append(f"the Deployment's strategy is {policy['maxSurge']}/{policy['maxUnavailable']}, not 1/0")
    if policy["preStop_s"] < ARGS.propagation + 1:
        problems.append(f"preStop {policy['preStop_s']} s does not cover the LB's {ARGS.propagation} s + 1 s margin")
    if policy["grace_s"] < policy["preStop_s"] + policy["delay_s"] + policy["drain_s"] + 5:
        problems.append("terminationGracePeriodSeconds < preStop + SHUTDOWN_DELAY_SECONDS + "
                        "GRACEFUL_SHUTDOWN_TIMEOUT + 5 s trace flush")

    tmp = tempfile.mkdtemp(prefix="rolling-update-")
    names = ["v100-a", "v100-b", "v110-a", "v110-b", "v100-c", "v100-d", "v120-a"]
    slots = [(n, free_port()) for n in names]
    lb_port = free_port()
    lb = HAProxy(tmp, ARGS.lb, lb_port, slots)
    sampler = Sampler(lb)
    sampler.start()
    cluster = Cluster(tmp, lb, slots, policy, ARGS)
    fifo = os.path.join(tmp, "model-never-arrives.onnx")
    os.mkfifo(fifo)
    rows, pods_all = [], cluster.pods
    try:
        say(f"haproxy ({ARGS.lb} mode, /ready checks every {CHECK['inter_s']} s, fall {CHECK['fall']}, "
            f"rise {CHECK['rise']}, no retries) on :{lb_port}; LB signal on deletion: {ARGS.lb_signal}")
        old = [cluster.create("1.0.0") for _ in range(2)]
        for p in old:
            if not wait_available(p, policy, 180):
                raise SystemExit(f"{p.name} did not become ready; see {p.log_path}")
        startup = max(p.ready_at - p.created for p in old)
        deadline = time.monotonic() + 15
        while {n for n, r in lb.servers().items() if r["status"].startswith("UP")} != {p.name for p in old}:
            if time.monotonic() > deadline:
                raise SystemExit(f"haproxy never settled on the two pods: {lb.servers()}")
            time.sleep(0.2)
        say(f"two 1.0.0 pods in rotation (ready {startup:.1f} s after start); the other slots down")
        # A new pod is seen ready at the first startup probe after it is (about its start time),
        # then counts after minReadySeconds; the second old pod goes preStop + drain after that.
        # Planned length of a rolling phase: two new pods (start, the startup probe's period,
        # minReadySeconds), then the last old pod's preStop and drain.
        # Longer is covered by further loadtest runs; shorter only idles.
        per_pod = min(startup, 4) + policy["startup_period_s"] + policy["minReadySeconds"]
        roll_s = LEAD_S + 2 * per_pod + policy["preStop_s"] + policy["delay_s"] + 1 + TAIL_S

        row, _ = run_phase("baseline", cluster, sampler, lb_port, 6, lambda: None, warmup_s=2)
        rows.append(row)

        # The rolling update, then the rollback: the same rollout from the pods serving now.
        current = old
        for phase, version, stalled_problem in (("rolling update 1.0.0 -> 1.1.0", "1.1.0", "the rolling update stalled"),
                                                ("rollback 1.1.0 -> 1.0.0", "1.0.0", "the rollback stalled")):
            previous = current
            row, (current, ok) = run_phase(phase, cluster, sampler, lb_port, roll_s,
                                           lambda: cluster.rollout(previous, version, deadline_s=60))
            rows.append(row)
            if not ok:
                problems.append(stalled_problem)
            for p in previous:
                say("   " + fmt_termination(p))

        pids = {p.name: p.proc.pid for p in current}

        def stalled():
            new, ok = cluster.rollout(current, "1.2.0", deadline_s=ARGS.stall_deadline, model_path=fifo)
            bad = new[-1]
            health = get(f"http://127.0.0.1:{bad.port}/health", timeout=2)[0]
            try:
                ready = get(f"http://127.0.0.1:{bad.port}/ready", timeout=2)[0]
            except Exception as e:  # noqa: BLE001
                ready = getattr(e, "code", str(e))
            say(f"   stalled pod {bad.name}: /health {health}, /ready {ready}; rollout undo deletes it")
            # The kubelet would SIGKILL at terminationGracePeriodSeconds; 5 s here (it takes no traffic).
            cluster.delete(bad, kill_after_s=5).join()
            return bad, ok, health, ready
        stall_s = LEAD_S + ARGS.stall_deadline + policy["preStop_s"] + 5 + TAIL_S
        row, (bad, ok, health, ready) = run_phase("stalled update 1.0.0 -> 1.2.0", cluster, sampler, lb_port,
                                                  stall_s, stalled)
        rows.append(row)
        say("   " + fmt_termination(bad))
        if ok:
            problems.append("the update to a pod that never becomes ready did not stall")
        if row["share"].get(bad.name):
            problems.append(f"the never-ready pod {bad.name} received {row['share'][bad.name]} connections")
        if sampler.first_in_rotation(bad.name, bad.created) is not None:
            problems.append(f"the never-ready pod {bad.name} was put in rotation")
        if ready == 200 or health != 200:
            problems.append(f"the stalled pod should answer /health 200, /ready 503: got {health}, {ready}")
        if any(p.proc.poll() is not None or p.proc.pid != pids[p.name] for p in current):
            problems.append("an old pod was touched by the stalled update")
    finally:
        sampler.stop_flag.set()
        for p in pods_all:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in pods_all:
            try:
                p.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.proc.kill()
        lb.stop()

    for r in rows:
        if r["failed"]:
            problems.append(f"{r['phase']}: {r['failed']} request(s) failed {r['statuses']} {r['failures']}")
        if r["fewest_in_rotation"] < 2:
            problems.append(f"{r['phase']}: only {r['fewest_in_rotation']} pod(s) in the LB's rotation at some point "
                            "(maxUnavailable 0 means 2): a new pod was counted available before the LB admitted it")
    for p in pods_all:
        code = p.termination.get("exit_code")
        if p.name != "v120-a" and code not in (0, None):
            problems.append(f"{p.name} exited {code} after SIGTERM")
    print(f"\n{ARGS.lb} LB, signal {ARGS.lb_signal}, propagation {ARGS.propagation} s")
    print("phase | sent | answered | failed | p50 ms | p99 ms | max ms | fewest in rotation | slowest /ready check ms")
    for r in rows:
        print(f"{r['phase']} ({r['seconds']:.0f} s) | {r['sent']} | {r['answered']} | {r['failed']} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['fewest_in_rotation']} | {r['slowest_ready_check_ms']}")
    json.dump({"policy": policy, "lb": ARGS.lb, "lb_signal": ARGS.lb_signal, "phases": rows,
               "terminations": {p.name: p.termination for p in pods_all}},
              open(os.path.join(tmp, "report.json"), "w"), indent=2)
    print(f"report and logs in {tmp}")
    for p in problems:
        print(f"FAIL {p}")
    print("PASS" if not problems else "FAIL", flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
