#!/usr/bin/env python3
"""Soak driver for scripts/soak.sh: verify load against a real server while it is SIGKILLed and restarted
many times and while its SoftHSM token folder is taken away and put back. Standard library only.

Load: one worker per activation, each looping create personalized payload -> `offline-token sign` ->
verify. A verification the server answered with `signatureValid: true` is *acknowledged*; its code is
kept for the checks below.

Measured (definitions, also in docs/robustness.md):
  lost        acknowledged verifications the server forgot: a replay of the acknowledged code that
              was accepted again, or whose nonce was no longer CONSUMED
  nonce_again replays, after every restart, of recently acknowledged codes whose nonce was not
              CONSUMED or that verified again (nonce registry forgot a consumed nonce)
  counter_back at the end, restarted with the nonce check off, replays of each activation's last
              acknowledged codes that were accepted: the counter went back below an acknowledged code
  bad_5xx     5xx answers other than the documented 503s
  unexpected_4xx  4xx answers to the load's well-formed requests (e.g. ERR0013 while the token returns)
  recovery    seconds from putting the token folder back to the next acknowledged verification
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode

DOCUMENTED_503 = {"ERR_HSM_UNAVAILABLE", "ERR_TIMEOUT", "ERR_BUSY", "ERR_OUTCOME_UNKNOWN", "ERR_STORE_UNAVAILABLE"}


class Server:
    def __init__(self, args, config):
        self.args, self.config, self.proc = args, config, None
        self.log = open(os.path.join(args.home, "server.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [self.args.bin, "serve", "--config", self.config], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.args.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("the server did not answer /health within 60 s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.acked = {}  # activation id -> [(counter, data, code)]
        self.last_ack_time = 0.0

    def bump(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def ack(self, activation_id, counter, data, code):
        with self.lock:
            self.acked.setdefault(activation_id, []).append((counter, data, code))
            self.counts["acknowledged"] = self.counts.get("acknowledged", 0) + 1
            self.last_ack_time = time.monotonic()


def post(args, path, body, timeout=30):
    """(status, json or None); (None, None) when the connection failed (server down)."""
    request = urllib.request.Request(
        args.url + path,
        data=json.dumps({"requestObject": body}).encode(),
        headers={"Content-Type": "application/json", "Authorization": args.auth},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


def classify(stats, status, body):
    """Counts a non-200 answer; returns True when the caller should back off."""
    if status is None:
        stats.bump("connection_failed")
        return True
    code = (body or {}).get("responseObject", {}).get("code") if isinstance(body, dict) else None
    if status == 503 and code in DOCUMENTED_503:
        stats.bump(f"503 {code}")
        return True
    if status >= 500:
        stats.bump("bad_5xx")
        stats.bump(f"bad {status} {code}")
        return True
    # The load sends only well-formed requests for active activations: any 4xx is a wrong answer
    # (e.g. ERR0013 for a key the token could not unwrap while it came back).
    stats.bump("unexpected_4xx")
    stats.bump(f"{status} {code}")
    return False


def worker(args, stats, activation_id, state_file, stop):
    n = 0
    while not stop.is_set():
        n += 1
        data = f"soak-{activation_id[:8]}-{n}\nSoak\nVerification {n}\nA2\n"
        status, body = post(args, "/rest/v3/signature/offline/personalized/create",
                            {"activationId": activation_id, "data": data})
        if status != 200:
            if classify(stats, status, body):
                time.sleep(0.05)
            continue
        offline = body["responseObject"]["offlineData"]
        signed = subprocess.run(
            [args.token_bin, "sign", "--state", state_file, "--offline-data", offline, "--json"],
            capture_output=True, text=True,
        )
        if signed.returncode != 0:
            stats.bump("sign_failed")
            continue
        s = json.loads(signed.stdout)
        status, body = post(args, "/rest/v3/signature/offline/verify",
                            {"activationId": activation_id, "data": s["data"], "signature": s["code"]})
        if status == 200:
            if body["responseObject"]["signatureValid"]:
                stats.ack(activation_id, s["counter"], s["data"], s["code"])
            else:
                stats.bump("valid_code_refused")
        elif classify(stats, status, body):
            time.sleep(0.05)


def replay(args, activation_id, data, code):
    status, body = post(args, "/rest/v3/signature/offline/verify",
                        {"activationId": activation_id, "data": data, "signature": code})
    if status != 200:
        return None
    r = body["responseObject"]
    return r["signatureValid"], r.get("nonceStatus")


def check_nonces(args, stats, forgotten, per_activation=3):
    """After a restart: the last acknowledged codes of each activation must answer CONSUMED, invalid."""
    with stats.lock:
        sample = [(a, c) for a, codes in stats.acked.items() for c in codes[-per_activation:]]
    for activation_id, (counter, data, code) in sample:
        result = replay(args, activation_id, data, code)
        if result is None:
            stats.bump("replay_unanswered")
            continue
        valid, nonce = result
        stats.bump("replays")
        if valid or nonce != "CONSUMED":
            stats.bump("nonce_again")
            forgotten.add((activation_id, counter))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--home", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--config-nonce-off", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--token-bin", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--states", nargs="+", required=True, help="ACTIVATION_ID=STATE_FILE")
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--token-outages", type=int, default=3)
    p.add_argument("--outage-seconds", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    args.auth = "Basic " + b64encode(
        f"{os.environ['OFFLINE_SIGNER_CLIENT_TOKEN']}:{os.environ['OFFLINE_SIGNER_CLIENT_SECRET']}".encode()
    ).decode()
    rng = random.Random(args.seed)
    stats, stop, forgotten = Stats(), threading.Event(), set()
    server = Server(args, args.config)
    server.start()
    started = time.monotonic()

    def start_load():
        stop.clear()
        threads = []
        for pair in args.states:
            activation_id, state_file = pair.split("=", 1)
            t = threading.Thread(target=worker, args=(args, stats, activation_id, state_file, stop))
            t.start()
            threads.append(t)
        return threads

    def stop_load(threads):
        stop.set()
        for t in threads:
            t.join()

    # Phase 1: SIGKILL under load, restart, check the nonces of what was acknowledged.
    for i in range(args.kills):
        threads = start_load()
        time.sleep(rng.uniform(0.3, 1.5))
        server.kill()
        stop_load(threads)
        server.start()
        check_nonces(args, stats, forgotten)
        print(f"kill {i + 1}/{args.kills}: {stats.counts.get('acknowledged', 0)} acknowledged", flush=True)

    # Phase 2: the token folder taken away for a while under load, then put back.
    tokens = os.path.join(args.home, "hsm", "tokens")
    recoveries = []
    for i in range(args.token_outages):
        threads = start_load()
        time.sleep(2)
        os.rename(tokens, tokens + ".away")
        time.sleep(args.outage_seconds)
        os.rename(tokens + ".away", tokens)
        back = time.monotonic()
        while stats.last_ack_time < back and time.monotonic() - back < 120:
            time.sleep(0.01)
        recovery = stats.last_ack_time - back if stats.last_ack_time >= back else float("inf")
        recoveries.append(round(recovery, 3))
        time.sleep(1)
        stop_load(threads)
        print(f"token outage {i + 1}/{args.token_outages}: recovered after {recovery:.3f} s", flush=True)

    # Phase 3: with the nonce check off, the last acknowledged codes of each activation must all be refused
    # by the counter check (at most 10 per activation: each refusal is a failed attempt).
    server.stop()
    server = Server(args, args.config_nonce_off)
    server.start()
    counter_back = 0
    with stats.lock:
        acked = {a: sorted(c, reverse=True)[:10] for a, c in stats.acked.items()}
    for activation_id, codes in acked.items():
        for counter, data, code in codes:
            result = replay(args, activation_id, data, code)
            if result is None:
                stats.bump("replay_unanswered")
            elif result[0]:
                counter_back += 1
                forgotten.add((activation_id, counter))
    server.stop()

    c = stats.counts
    report = {
        "kills": args.kills,
        "token_outages": args.token_outages,
        "outage_seconds": args.outage_seconds,
        "duration_seconds": round(time.monotonic() - started, 1),
        "acknowledged": c.get("acknowledged", 0),
        "lost": len(forgotten),
        "counter_back": counter_back,
        "nonce_again": c.get("nonce_again", 0),
        "replays_after_restart": c.get("replays", 0),
        "bad_5xx": c.get("bad_5xx", 0),
        "valid_code_refused": c.get("valid_code_refused", 0),
        "unexpected_4xx": c.get("unexpected_4xx", 0),
        "recovery_seconds": recoveries,
        "answers": {k: v for k, v in sorted(c.items()) if k not in ("acknowledged", "replays")},
    }
    print(json.dumps(report, indent=2))
    failed = (report["lost"] or report["counter_back"] or report["nonce_again"] or report["bad_5xx"]
              or report["valid_code_refused"] or report["unexpected_4xx"] or any(r > 5 for r in recoveries))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
