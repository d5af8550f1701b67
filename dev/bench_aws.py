"""The sweeps' comparison again, through a model of AWS: the runs of `dev/bench_sweeps.py`
(AMI Warden in report and enforce mode, Cloud Custodian's issue policies and its careful ones
with `cross-account`), each its own process, sent through `aws-model-proxy` (AWS's latency and
EC2's token buckets at their documented default sizes, docs/aws-model.md) in front of the same
seeded bench moto.

    python dev/bench_aws.py AMI_WARDEN CUSTODIAN WORK_DIR ESTATE_JSON PROXY_URL LATENCY_MS PER_KIB_MS
    python dev/bench_aws.py --report WORK_DIR     # the report again, from a kept WORK_DIR

Run by `dev/bench aws`, which builds the binaries, starts the server and the proxy and seeds
the estate. AWS_ENDPOINT_URL is the server (this script reads the estate back from it
directly, as `bench_sweeps.py` does); the tools get PROXY_URL as theirs (botocore and the AWS
SDK for Rust both honour AWS_ENDPOINT_URL). AMI Warden runs paced to AWS's buckets, its
default (EC2_PACE unset). Before each run the proxy's statistics are reset and its buckets
filled; after it they are read: requests, throttled requests, and the floor, the least time in
which AWS's busiest bucket would have admitted what the run sent. Markdown on stdout, progress
on stderr; raw outputs stay in WORK_DIR.

This measures the proxy's model on moto, not AWS: moto's own service time is in every wall
time, and AWS's latency and page sizes are not moto's.
"""
import json
import os
import sys
import time
import urllib.request
from urllib.parse import urlparse

import bench_sweeps
from bench_sweeps import by_operation, server_seconds, speed

# The runs in the order `bench_sweeps.run_all` makes them, with the label each gets here.
RUNS = [
    ("warden_exposure", "AMI Warden `exposure` (report; writes the share ledger)"),
    ("warden_exposure_again", "AMI Warden `exposure`, the next run (between full reads)"),
    ("warden_deprecation", "AMI Warden `deprecation --dry-run`"),
    ("warden_snapshots", "AMI Warden `snapshots --dry-run`"),
    ("warden_snapshots_again", "AMI Warden `snapshots --dry-run`, the next run (share readings kept)"),
    ("custodian_ami", "Cloud Custodian `ami` image-age + unused (issue)"),
    ("custodian_snapshots", "Cloud Custodian `ebs-snapshot` age + unused (issue)"),
    ("custodian_ami_careful", "Cloud Custodian `ami` … + not cross-account (careful)"),
    ("custodian_snapshots_careful", "Cloud Custodian `ebs-snapshot` … + not cross-account (careful)"),
    ("warden_retire", "AMI Warden `deprecation --enforce`"),
    ("warden_reap", "AMI Warden `snapshots --enforce`"),
]
THROTTLE_MARK = "RequestLimitExceeded"
# shared/src/exposure/mod.rs's LISTING_MARGIN (a minute), and a second.
LISTING_MARGIN_S = 61
TARGET_FLOOR_RATIO = 1.2
MIN_FLOOR_S = 1.0
TARGET_CAREFUL_SPEEDUP = 10.0


def say(*args):
    print("bench_aws:", *args, file=sys.stderr, flush=True)


def loopback(url):
    if urlparse(url).hostname != "127.0.0.1":
        sys.exit(f"bench_aws: {url!r} is not this machine's loopback")
    return url


class ProxyMeter:
    """The proxy's statistics as a `bench_sweeps.timed` meter: reset (buckets full, counts
    zero) before a run, read after it."""

    def __init__(self, url):
        self.url = loopback(url)

    def call(self, path, method="GET"):
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.load(r)

    def reset(self):
        self.call("/_proxy/reset", "POST")

    def read(self):
        stats = self.call("/_proxy/stats")
        say(f"proxy: {stats['requests']} requests, {stats['throttled']} throttled, floor {stats['floor_seconds']:.1f} s ({busiest_text(stats)})")
        return stats


def busiest_bucket(stats):
    key = stats.get("busiest")
    if not key:
        return None
    for b in stats["buckets"]:
        if all(b[k] == key[k] for k in ("account", "region", "action", "class")):
            return b
    return None


def bucket_text(b):
    """`DescribeImageAttribute (100 + 20/s): 1100 admitted`."""
    unfiltered = ", unfiltered" if b["class"] == "unfiltered-non-mutating" else ""
    return f"{b['action']} ({b['burst']:g} + {b['refill_per_sec']:g}/s{unfiltered}): {b['admitted']} admitted"


def busiest_text(stats):
    b = busiest_bucket(stats)
    return bucket_text(b) if b else "no EC2 request"


def throttle_marks(run):
    """Lines of the run's stdout and stderr naming EC2's throttling error."""
    out = run.get("out")
    if not out:
        return 0
    found = 0
    for path in (out, out + ".stderr"):
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                found += sum(1 for line in f if THROTTLE_MARK in line)
    return found


def report_errors(run):
    """The `errors` AMI Warden's JSON reports carry (one report per Region); 0 for Custodian."""
    out = run.get("out")
    if not out or not out.endswith(".json") or not os.path.exists(out):
        return 0
    try:
        reports = json.load(open(out))
    except ValueError:
        return 0
    reports = reports if isinstance(reports, list) else [reports]
    return sum(len(r.get("errors") or []) for r in reports if isinstance(r, dict))


def ended(key, run):
    """`exit 0` and whatever says the run ended with errors."""
    parts = [f"exit {run['exit']}"]
    if key in ("warden_exposure", "warden_exposure_again") and run["exit"] == 1:
        parts[0] += " (exposures found, as seeded)"
    errors = report_errors(run)
    if errors:
        parts.append(f"{errors} errors in its report")
    marks = throttle_marks(run)
    if marks:
        parts.append(f"{marks} lines with {THROTTLE_MARK}")
    return ", ".join(parts)


def clean(key, run):
    """Whether the run ended without errors (exposure's exit 1 is its finding, not an error)."""
    ok_exit = run["exit"] == 0 or (key in ("warden_exposure", "warden_exposure_again") and run["exit"] == 1)
    return ok_exit and not report_errors(run) and not throttle_marks(run)


def floor_ratio(run):
    floor = run["proxy"]["floor_seconds"]
    return run["wall"] / floor if floor > 0 else None


def exposure_found(run):
    reports = json.load(open(run["out"]))
    read = sum(r["permissions_read"] for r in reports)
    exposed = sum(len(r["exposed_images"]) + len(r["exposed_snapshots"]) for r in reports)
    return f"{exposed} exposed; launch permissions of {read} images read"


def flagged(key, run, check):
    if key in ("warden_exposure", "warden_exposure_again"):
        return exposure_found(run)
    found = run.get("found")
    if key == "warden_deprecation":
        return f"{found['flagged']} to deregister of {found['images']}"
    if key in ("warden_snapshots", "warden_snapshots_again"):
        return f"{found['flagged']} to delete of {found['decided']} decided"
    if key.startswith("custodian_"):
        return str(found["flagged"])
    if key == "warden_retire" and check:
        return f"{check['deregistered']} deregistered, {check['deadlines_stamped']} deadlines stamped"
    if key == "warden_reap" and check:
        return f"{check['deleted']} deleted"
    return ""


def main():
    warden, custodian, work, estate_path, proxy_url, latency_ms, per_kib_ms = sys.argv[1:8]
    estate = json.load(open(estate_path))
    bench_sweeps.endpoint()  # the server: loopback only
    base = dict(os.environ)
    env_warden = bench_sweeps.warden_env(base)
    env_warden.pop("EC2_PACE")  # paced to AWS's buckets, the product's default
    env_warden["AWS_ENDPOINT_URL"] = loopback(proxy_url)
    env_custodian = dict(base, AWS_ENDPOINT_URL=proxy_url)
    meters = {"proxy": ProxyMeter(proxy_url)}
    # The exposure sweep's next run reads again the images made within a minute before the
    # last sweep began (EC2's listing may not show them yet): let the seeded estate age past
    # that, as a real one has, so the next run shows what a day between full reads costs.
    age = time.time() - os.path.getmtime(estate_path)
    if age < LISTING_MARGIN_S:
        print(f"bench_aws: letting the estate age {LISTING_MARGIN_S - age:.0f} s past the listing margin", file=sys.stderr)
        time.sleep(LISTING_MARGIN_S - age)
    enforce_runs = not os.environ.get("BENCH_NO_ENFORCE")
    runs = bench_sweeps.run_all(warden, custodian, work, estate, env_warden, env_custodian, meters, again=True,
                                exposure_again=True, enforce_runs=enforce_runs)
    model = {"latency_ms": float(latency_ms), "per_kib_ms": float(per_kib_ms)}
    with open(os.path.join(work, "runs-aws.json"), "w") as f:
        json.dump({"estate": estate, "model": model, "runs": runs}, f, indent=1)
    report(estate, model, runs)


def report(estate, model, runs):
    print(
        f"Proxy's model: {model['latency_ms']:g} ms a request + {model['per_kib_ms']:g} ms a KiB of answer; EC2's token "
        "buckets at AWS's default sizes, one per account, Region and action (docs/aws-model.md), an empty one answers "
        "RequestLimitExceeded; in front of the bench moto (one request at a time). AMI Warden paced to AWS's buckets "
        "(EC2_PACE unset); Cloud Custodian as it comes (botocore's retries).\n"
    )
    print(
        f"Estate: {estate['images']} images in {estate['families']} families, {estate['deregistered_images']} more "
        f"deregistered, {estate['snapshots']} snapshots ({estate['hand_made_snapshots']} hand-made), "
        f"{estate.get('shared_images', 0)} images shared, {estate['instances']} instances, "
        f"{estate['launch_templates']} launch templates. Seeded in {estate['seed_seconds']:.0f} s (directly, not through the proxy).\n"
    )
    check = runs.get("enforce_check")
    print("| run | wall time | requests | throttled | floor (busiest bucket) | wall ÷ floor | of which in moto | flagged | ended |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, label in RUNS:
        run = runs.get(key)
        if not run:
            continue
        stats = run["proxy"]
        ratio = floor_ratio(run)
        floor = f"{stats['floor_seconds']:.1f} s ({busiest_text(stats)})" if ratio else "0 s"
        ratio_text = f"{ratio:.2f}×" if ratio else "no bucket past its burst"
        print(
            f"| {label} | {run['wall']:.1f} s | {stats['requests']} | {stats['throttled']} | {floor} | {ratio_text} | "
            f"{server_seconds(run):.1f} s | {flagged(key, run, check)} | {ended(key, run)} |"
        )
    print()
    wd, ws = runs["warden_deprecation"], runs["warden_snapshots"]
    ours = wd["wall"] + ws["wall"]
    # The next day's report: the snapshot sweep reads the share readings of the last days.
    ours_next = wd["wall"] + runs["warden_snapshots_again"]["wall"] if "warden_snapshots_again" in runs else None
    issue = runs["custodian_ami"]["wall"] + runs["custodian_snapshots"]["wall"]
    careful = runs["custodian_ami_careful"]["wall"] + runs["custodian_snapshots_careful"]["wall"]
    print("Report mode, both jobs (deprecation + snapshots), AMI Warden / Cloud Custodian, wall time:\n")
    print(f"- against Custodian's careful policies (cross-account): {ours:.1f} s / {careful:.1f} s: AMI Warden {speed(ours, careful)}")
    if ours_next:
        print(f"- the same on a next day (AMI Warden's snapshot sweep reading its share readings): {ours_next:.1f} s / {careful:.1f} s: AMI Warden {speed(ours_next, careful)}")
    print(f"- against Custodian's issue policies: {ours:.1f} s / {issue:.1f} s: AMI Warden {speed(ours, issue)}")
    print()
    print("Targets:\n")
    # The target is AMI Warden's; a floor under a second (a bucket barely past its burst) is
    # no floor a run could be held to.
    ours_runs = [(key, label) for key, label in RUNS if key in runs and key.startswith("warden_")]
    floored = [(key, label) for key, label in ours_runs if runs[key]["proxy"]["floor_seconds"] >= MIN_FLOOR_S]
    far = [f"{label} {floor_ratio(runs[key]):.2f}×" for key, label in floored if floor_ratio(runs[key]) > TARGET_FLOOR_RATIO]
    without_floor = [label for key, label in ours_runs if (key, label) not in floored]
    print(
        f"- every AMI Warden run within {TARGET_FLOOR_RATIO}× of its floor: {'met' if not far else 'not met: ' + '; '.join(far)}"
        + (f" (no floor of a second or more: {'; '.join(without_floor)})" if without_floor else "")
    )
    for when, total in (("a first run", ours), ("a next day", ours_next)):
        if not total:
            continue
        speedup = careful / total if total > 0 else 0
        print(f"- report mode ≥ {TARGET_CAREFUL_SPEEDUP:g}× faster than Custodian's careful policies, {when}: {'met' if speedup >= TARGET_CAREFUL_SPEEDUP else 'not met'} ({speedup:.2f}×)")
    unclean = [f"{label} ({ended(key, runs[key])})" for key, label in RUNS if key in runs and not clean(key, runs[key])]
    print(f"- no run ends with errors (throttling or other): {'met' if not unclean else 'not met: ' + '; '.join(unclean)}")
    print()
    print("EC2 buckets past their burst, by run (admitted, throttled, the floor each sets):\n")
    for key, label in RUNS:
        if key not in runs:
            continue
        past = sorted((b for b in runs[key]["proxy"]["buckets"] if b["floor_seconds"] > 0), key=lambda b: -b["floor_seconds"])
        text = "; ".join(f"{bucket_text(b)}, {b['throttled']} throttled, {b['floor_seconds']:.1f} s" for b in past)
        throttled_elsewhere = sum(b["throttled"] for b in runs[key]["proxy"]["buckets"] if b["floor_seconds"] == 0)
        if throttled_elsewhere:
            text += f"{'; ' if text else ''}{throttled_elsewhere} throttled in buckets within their burst"
        print(f"- {label}: {text or 'none'}")
    print()
    print("Requests by operation, as moto counted them (what the proxy forwarded; count, time moto spent on them):\n")
    for key, label in RUNS:
        if key in runs:
            print(f"- {label}: {by_operation(runs[key])}")
    if check:
        print()
        print(
            f"Enforce mode through the proxy, read back from moto afterwards: {check['deregistered']} images deregistered of "
            f"{check['planned_in_report_mode']} planned ({check['deregistered_not_planned']} not planned, "
            f"{check['planned_not_deregistered']} planned and kept), in use {check['deregistered_in_use']}, shared "
            f"{check['deregistered_shared']}, errors {check['retire_errors']}; {check['deleted']} snapshots deleted of "
            f"{check['orphans_before']} orphans ({check['deleted_orphans']} of them), of registered images "
            f"{check['deleted_of_registered_images']}, hand-made {check['deleted_hand_made']}, errors {check['reap_errors']}."
        )
    print()
    print("What each figure measures, and where it holds:\n")
    print("| figure | what it is | holds for |")
    print("|---|---|---|")
    print(
        "| wall time (this table) | process start to exit, through the proxy: moto's service time + the proxy's latency "
        "on every request + waiting for the buckets (pacing, or retrying what they refused) | the proxy's model on moto; "
        "on AWS, AWS's latency and service time replace them |"
    )
    print(
        "| requests, throttled | counted by the proxy: every attempt, all services; throttled = refused by the model's "
        "buckets | the tools' own behaviour, so AWS too for the same estate, save page sizes (moto's may differ) and other "
        "callers sharing the account's buckets (more throttling) |"
    )
    print(
        "| floor, wall ÷ floor | the least time AWS's busiest default bucket allows for the requests the run sent | AWS, "
        "for an account at default limits with no other callers |"
    )
    print(
        "| of which in moto | time moto spent serving the run (`dev/bench_moto.py`) | this machine's moto only |"
    )
    print(
        "| the moto-only figures (`dev/bench sweeps`, AMI Warden with EC2_PACE=off) | moto's speed: no latency, no "
        "limits | which tool does less work, on moto; not how long either takes on AWS |"
    )


def rerender(work):
    saved = json.load(open(os.path.join(work, "runs-aws.json")))
    report(saved["estate"], saved["model"], saved["runs"])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        rerender(sys.argv[2])
    else:
        main()
