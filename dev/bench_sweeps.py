"""The sweeps at scale, side by side: AMI Warden's deprecation and snapshot sweeps in report
mode, and Cloud Custodian's closest policies in dry-run, on the same seeded moto estate, each
timed from process start to exit and counted by the server (`dev/bench_moto.py`). AMI Warden
runs unpaced (`EC2_PACE=off`): these are moto's figures, not AWS's (`dev/bench_aws.py` runs the
same through a model of AWS's latency and request limits).

    python dev/bench_sweeps.py AMI_WARDEN_BINARY CUSTODIAN_BINARY WORK_DIR ESTATE_JSON
    python dev/bench_sweeps.py --report WORK_DIR     # the report again, from a kept WORK_DIR

Run by `dev/bench sweeps`, which starts the server, seeds the estate and builds the binaries;
AWS_ENDPOINT_URL must point at that server (loopback only). Prints a markdown report on
stdout; raw outputs stay in WORK_DIR.

What runs, each in its own process, in this order (nothing is cached between runs):

- `ami-warden exposure --format json` for the account: the daily exposure sweep, which reads
  every image's launch permissions anyway and writes them into the share ledger the
  deprecation sweep reads. It is the exposure job, not part of the comparison (Custodian's
  policies check no shares), and is reported on its own line;
- `ami-warden deprecation --dry-run --days-ahead 1 --format json` with DEPRECATE_AFTER_DAYS=0
  and GRACE_DAYS=0 (moto's images are all minutes old: planning a day ahead puts the deadlines
  the seed set in the past; KEEP_LATEST and the rest at their defaults);
- `ami-warden snapshots --dry-run --format json` with MIN_AGE_DAYS=0, twice: the first run
  notes each orphan's fate on its lineage node, the second (the next day's, nothing changed)
  finds them noted;
- `custodian run --dryrun --cache-period 0` of `ami` with `image-age` (days 0) and `unused`;
- `custodian run --dryrun --cache-period 0` of `ebs-snapshot` with `age` (days 0) and
  `unused` (not used by any image, launch configuration or Auto Scaling group's template);
- the same two Custodian policies made as careful as Custodian can be about sharing: each with
  `not: [cross-account]`, which keeps what another account may launch or restore, as AMI
  Warden does. The issue names the first pair; the second pair is the same job as far as
  Custodian can do it;
- last, because they change the estate, once every deadline the seed set has passed for real:
  `ami-warden deprecation --enforce`, then `ami-warden snapshots --enforce`, timed and counted
  the same way, and what they did read back from EC2 and checked against what the seed says
  must never be touched (`truth.json`: images in use, shared images, hand-made snapshots) and
  against the report-mode plan.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter

ACCOUNT = "123456789012"
REGION = "us-east-1"

CUSTODIAN_POLICIES = {
    "ami": """policies:
  - name: ami-old-unused
    resource: ami
    filters:
      - type: image-age
        days: 0
      - type: unused
        value: true
""",
    "snapshots": """policies:
  - name: snapshot-old-unused
    resource: ebs-snapshot
    filters:
      - type: age
        days: 0
        op: ge
      - type: unused
        value: true
""",
}

# The same two jobs with Custodian made as careful as it can be made: its `cross-account`
# filter (launch permissions image by image, create-volume permissions snapshot by snapshot)
# keeps what another account may use, as AMI Warden does. It still cannot see launch template
# versions outside Auto Scaling groups, SSM parameters or Image Builder recipes.
NOT_CROSS_ACCOUNT = """      - not:
          - type: cross-account
"""
CUSTODIAN_POLICIES["ami_careful"] = CUSTODIAN_POLICIES["ami"].replace("ami-old-unused", "ami-old-unused-unshared") + NOT_CROSS_ACCOUNT
CUSTODIAN_POLICIES["snapshots_careful"] = (
    CUSTODIAN_POLICIES["snapshots"].replace("snapshot-old-unused", "snapshot-old-unused-unshared") + NOT_CROSS_ACCOUNT
)

CUSTODIAN_POLICY_NAMES = {
    "ami": "ami-old-unused",
    "snapshots": "snapshot-old-unused",
    "ami_careful": "ami-old-unused-unshared",
    "snapshots_careful": "snapshot-old-unused-unshared",
}


def endpoint():
    url = os.environ["AWS_ENDPOINT_URL"]
    if not url.startswith("http://127.0.0.1:"):
        sys.exit(f"bench_sweeps: AWS_ENDPOINT_URL={url!r} is not this machine's loopback")
    return url


def bench_call(path, method="GET"):
    request = urllib.request.Request(endpoint() + path, method=method)
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


def timed(name, argv, env, out_path, meters=None):
    """Runs one tool with the server counter reset first; returns wall time and counts.
    `meters` (`{key: meter}`, each with `reset()` and `read()`) are more counters, reset before
    the run like the server's and read after it into the run's `key`."""
    meters = meters or {}
    bench_call("/_bench/reset", "POST")
    for meter in meters.values():
        meter.reset()
    print(f"bench_sweeps: {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(out_path, "wb") as out, open(out_path + ".stderr", "wb") as err:
        code = subprocess.run(argv, env=env, stdout=out, stderr=err).returncode
    wall = time.monotonic() - started
    calls = bench_call("/_bench/calls")
    print(f"bench_sweeps: {name}: exit {code}, {wall:.1f} s, {sum(v['requests'] for v in calls.values())} requests", file=sys.stderr, flush=True)
    run = {"name": name, "exit": code, "wall": wall, "calls": calls, "out": out_path}
    for key, meter in meters.items():
        run[key] = meter.read()
    return run


def requests(run):
    return sum(v["requests"] for v in run["calls"].values())


def server_seconds(run):
    return sum(v["seconds"] for v in run["calls"].values())


def by_operation(run):
    return ", ".join(
        f"{k} {v['requests']} ({v['seconds']:.1f} s)"
        for k, v in sorted(run["calls"].items(), key=lambda kv: (-kv[1]["requests"], kv[0]))
    )


def why_kind(why):
    """`{"reason": "newest_of_family", "detail": ...}` → `newest_of_family`."""
    if isinstance(why, dict):
        return str(why.get("reason") or next(iter(why), "?"))
    return str(why)


def warden_deprecation_found(path):
    reports = json.load(open(path))
    planned = [p for r in reports for p in r["planned"]]
    deregister = sum(1 for p in planned if p["decision"]["decision"] == "deregister")
    keeps = Counter(why_kind(p["decision"].get("why")) for p in planned if p["decision"]["decision"] != "deregister")
    stamps = sum(len(r["stamped"]) for r in reports)
    return {"images": len(planned), "flagged": deregister, "kept": dict(keeps), "to_stamp": stamps}


def warden_snapshots_found(path):
    reports = json.load(open(path))
    outcomes = [o for r in reports for o in r["outcomes"]]
    delete = sum(1 for o in outcomes if o["decision"] == "delete")
    keeps = Counter(o["reason"].split(":")[0] for o in outcomes if o["decision"] != "delete")
    return {
        "decided": len(outcomes),
        "flagged": delete,
        "kept": dict(keeps),
        "not_from_images": sum(r["not_from_images"] for r in reports),
        "with_live_images": sum(r["with_live_images"] for r in reports),
        "errors": sum(len(r["errors"]) for r in reports),
    }


def custodian_found(out_dir, policy):
    with open(os.path.join(out_dir, policy, "resources.json")) as f:
        resources = json.load(f)
    ids = [r.get("ImageId") or r.get("SnapshotId") for r in resources]
    with open(os.path.join(out_dir, policy, "metadata.json")) as f:
        duration = json.load(f).get("execution", {}).get("duration")
    return {"flagged": len(resources), "ids": ids, "policy_seconds": duration}


def use_kind(detail):
    """`launch template lt-… version 3` → `launch template`; `ec2:Instance arn…` → `instance`."""
    for kind in ("launch template", "launch configuration", "Auto Scaling group", "instance"):
        if detail.startswith(kind) or detail.lower().startswith("ec2:" + kind.replace(" ", "")):
            return kind
    return detail.split(" ")[0]


def cross_check(work, runs, ami_key="custodian_ami"):
    """What one tool flags and the other keeps, and why (from both tools' own outputs)."""
    reports = json.load(open(os.path.join(work, "warden-deprecation.json")))
    planned = {p["image_id"]: p for r in reports for p in r["planned"]}
    flagged_by_custodian = set(runs[ami_key]["found"]["ids"])
    kept_by_warden = Counter()
    in_use_by = Counter()
    for image in flagged_by_custodian:
        p = planned.get(image)
        if p is None or p["decision"]["decision"] == "deregister":
            continue
        why = p["decision"].get("why") or {}
        kept_by_warden[why_kind(why)] += 1
        if why.get("reason") == "in_use":
            in_use_by[", ".join(sorted({use_kind(d) for d in why.get("detail", [])}))] += 1
    snapshots = json.load(open(os.path.join(work, "warden-snapshots.json")))
    decided = {o["snapshot_id"] for r in snapshots for o in r["outcomes"]}
    custodian_snapshots = set(runs["custodian_snapshots"]["found"]["ids"])
    return {
        "images_flagged_by_custodian_kept_by_warden": dict(kept_by_warden),
        "of_which_in_use_by": dict(in_use_by),
        "snapshots_flagged_by_custodian_not_from_images": len(custodian_snapshots - decided),
        "snapshots_flagged_by_both": len(custodian_snapshots & decided),
    }


def warden_env(base):
    """AMI Warden's settings for the sweeps (see the module's doc), unpaced: these runs measure
    moto's speed, not AWS's request limits (`EC2_PACE=off`)."""
    return dict(
        base,
        MODE="report",
        DEPRECATE_AFTER_DAYS="0",
        GRACE_DAYS="0",
        MIN_AGE_DAYS="0",
        AWS_ACCOUNT_ID=ACCOUNT,
        AMI_WARDEN_LOG="warn",
        EC2_PACE="off",
    )


def run_all(warden, custodian, work, estate, env_warden, env_custodian, meters=None, again=True,
            exposure_again=False, enforce_runs=True):
    """Every run of the module's doc, in its order, each its own process; `again=False` leaves
    out the snapshot sweep's second run; `exposure_again=True` adds the exposure sweep's next
    run (between full reads: only what may have changed); `enforce_runs=False` leaves out the
    enforce-mode runs. Returns the runs by key."""
    runs = {}
    runs["warden_exposure"] = timed(
        "AMI Warden exposure sweep (writes the share ledger)",
        [warden, "exposure", "--format", "json", "--region", REGION],
        env_warden,
        os.path.join(work, "warden-exposure.json"),
        meters,
    )
    if exposure_again:
        runs["warden_exposure_again"] = timed(
            "AMI Warden exposure sweep, next run (between full reads)",
            [warden, "exposure", "--format", "json", "--region", REGION],
            env_warden,
            os.path.join(work, "warden-exposure-again.json"),
            meters,
        )
    runs["warden_deprecation"] = timed(
        "AMI Warden deprecation sweep",
        [warden, "deprecation", "--dry-run", "--days-ahead", "1", "--format", "json", "--region", REGION],
        env_warden,
        os.path.join(work, "warden-deprecation.json"),
        meters,
    )
    runs["warden_snapshots"] = timed(
        "AMI Warden snapshot sweep",
        [warden, "snapshots", "--dry-run", "--format", "json", "--region", REGION],
        env_warden,
        os.path.join(work, "warden-snapshots.json"),
        meters,
    )
    if again:
        runs["warden_snapshots_again"] = timed(
            "AMI Warden snapshot sweep, second run",
            [warden, "snapshots", "--dry-run", "--format", "json", "--region", REGION],
            env_warden,
            os.path.join(work, "warden-snapshots-again.json"),
            meters,
        )
    for key, policy_name in CUSTODIAN_POLICY_NAMES.items():
        policy_file = os.path.join(work, f"custodian-{key}.yml")
        with open(policy_file, "w") as f:
            f.write(CUSTODIAN_POLICIES[key])
        out_dir = os.path.join(work, f"custodian-{key}")
        runs[f"custodian_{key}"] = timed(
            f"Cloud Custodian {key} policy",
            [custodian, "run", "--dryrun", "--cache-period", "0", "-r", REGION, "-s", out_dir, policy_file],
            env_custodian,
            os.path.join(work, f"custodian-{key}.log"),
            meters,
        )
        runs[f"custodian_{key}"]["found"] = custodian_found(out_dir, policy_name)
    runs["warden_deprecation"]["found"] = warden_deprecation_found(os.path.join(work, "warden-deprecation.json"))
    runs["warden_snapshots"]["found"] = warden_snapshots_found(os.path.join(work, "warden-snapshots.json"))
    if again:
        runs["warden_snapshots_again"]["found"] = warden_snapshots_found(os.path.join(work, "warden-snapshots-again.json"))
    if estate.get("latest_deadline") and enforce_runs:
        enforce(warden, work, runs, env_warden, estate, meters)
    return runs


def main():
    warden, custodian, work, estate_path = sys.argv[1:5]
    estate = json.load(open(estate_path))
    base = dict(os.environ)
    runs = run_all(warden, custodian, work, estate, warden_env(base), dict(base))
    with open(os.path.join(work, "runs.json"), "w") as f:
        json.dump({"estate": estate, "runs": runs}, f, indent=1)
    report(estate, runs, cross_check(work, runs), careful_check(work, runs))


def ec2_client():
    import boto3

    return boto3.client("ec2", region_name=REGION, endpoint_url=endpoint())


def estate_now(ec2):
    """Every registered image with its snapshots, every snapshot, and the Recycle Bin's images."""
    images = {
        i["ImageId"]: {b["Ebs"]["SnapshotId"] for b in i.get("BlockDeviceMappings", []) if b.get("Ebs", {}).get("SnapshotId")}
        for page in ec2.get_paginator("describe_images").paginate(Owners=["self"])
        for i in page["Images"]
    }
    snapshots = {s["SnapshotId"] for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"]) for s in page["Snapshots"]}
    def in_bin(list_call, key, id_key):
        found, token = set(), None
        while True:
            page = list_call(**({"NextToken": token} if token else {}))
            found |= {i[id_key] for i in page.get(key, [])}
            token = page.get("NextToken")
            if not token:
                return found

    binned = in_bin(ec2.list_images_in_recycle_bin, "Images", "ImageId")
    binned_snapshots = in_bin(ec2.list_snapshots_in_recycle_bin, "Snapshots", "SnapshotId")
    return images, snapshots, binned, binned_snapshots


def enforce(warden, work, runs, env, estate, meters=None):
    """Last, because they change the estate: both sweeps in enforce mode, for real, once every
    deadline the seed set has passed; then what they did, against what must never be touched
    (read from the server itself, AWS_ENDPOINT_URL, whatever endpoint `env` gives the tool)."""
    from datetime import datetime, timezone

    wait = (datetime.fromisoformat(estate["latest_deadline"]) - datetime.now(timezone.utc)).total_seconds() + 5
    if wait > 0:
        print(f"bench_sweeps: waiting {wait:.0f} s for the last deadline to pass", file=sys.stderr, flush=True)
        time.sleep(wait)
    ec2 = ec2_client()
    images_before, snapshots_before, _, _ = estate_now(ec2)
    runs["warden_retire"] = timed(
        "AMI Warden deprecation sweep, enforce mode",
        [warden, "deprecation", "--enforce", "--format", "json", "--region", REGION],
        env,
        os.path.join(work, "warden-retire.json"),
        meters,
    )
    _, snapshots_between, _, _ = estate_now(ec2)
    runs["warden_reap"] = timed(
        "AMI Warden snapshot sweep, enforce mode",
        [warden, "snapshots", "--enforce", "--format", "json", "--region", REGION],
        env,
        os.path.join(work, "warden-reap.json"),
        meters,
    )
    images_after, snapshots_after, binned, binned_snapshots = estate_now(ec2)
    retire = json.load(open(os.path.join(work, "warden-retire.json")))
    reap = json.load(open(os.path.join(work, "warden-reap.json")))
    truth = json.load(open(os.path.join(work, "truth.json")))
    planned = {p["image_id"] for r in json.load(open(os.path.join(work, "warden-deprecation.json"))) for p in r["planned"] if p["decision"]["decision"] == "deregister"}
    retired = set(images_before) - set(images_after)
    deleted = snapshots_between - snapshots_after
    used_before = set().union(*images_before.values())
    hand_made = set(truth["hand_made_snapshots"])
    orphans = snapshots_before - used_before - hand_made
    of_retired = set().union(*(images_before[i] for i in retired)) if retired else set()
    of_registered = set().union(*images_after.values())
    runs["enforce_check"] = {
        "planned_in_report_mode": len(planned),
        "deregistered": len(retired),
        "reported_deregistered": sum(len(r["deregistered"]) for r in retire),
        "deadlines_stamped": sum(len(r["stamped"]) for r in retire),
        "snapshots_gone_with_retirements": len(snapshots_before - snapshots_between),
        "retire_errors": sum(len(r["errors"]) for r in retire),
        "deregistered_not_planned": len(retired - planned),
        "planned_not_deregistered": len(planned - retired),
        "deregistered_in_use": len(retired & set(truth["in_use"])),
        "deregistered_shared": len(retired & set(truth["shared"])),
        "deregistered_in_recycle_bin": len(retired & binned),
        "orphans_before": len(orphans),
        "deleted": len(deleted),
        "deleted_orphans": len(deleted & orphans),
        "deleted_in_recycle_bin": len(deleted & binned_snapshots),
        "deleted_of_retired_images": len(deleted & of_retired),
        "deleted_of_registered_images": len(deleted & of_registered),
        "deleted_hand_made": len(deleted & hand_made),
        "reap_kept": dict(Counter(o["reason"].split(":")[0] for r in reap for o in r["outcomes"] if o["decision"] != "delete")),
        "reap_deleted": sum(1 for r in reap for o in r["outcomes"] if o["action"]["action"] == "deleted"),
        "reap_errors": sum(len(r["errors"]) for r in reap),
    }


def speed(ours, theirs):
    """`3.2× faster` or `2.99× slower`: how AMI Warden's time compares with Custodian's."""
    if ours <= 0 or theirs <= 0:
        return "-"
    return f"{theirs / ours:.2f}× faster" if theirs >= ours else f"{ours / theirs:.2f}× slower"


def both_row(label, ours, theirs):
    """A table row adding up both jobs of each tool: wall time, ratio, requests, moto's time."""
    wall_w, wall_c = sum(r["wall"] for r in ours), sum(r["wall"] for r in theirs)
    print(
        f"| {label} | AMI Warden / Cloud Custodian | {wall_w:.1f} s / {wall_c:.1f} s: AMI Warden {speed(wall_w, wall_c)} | "
        f"{sum(map(requests, ours))} / {sum(map(requests, theirs))} | {sum(map(server_seconds, ours)):.1f} s / "
        f"{sum(map(server_seconds, theirs)):.1f} s | |"
    )


def careful_check(work, runs):
    """`cross_check` for the Custodian policy with cross-account, when it ran."""
    return cross_check(work, runs, "custodian_ami_careful") if "custodian_ami_careful" in runs else None


def report(estate, runs, cross, careful=None):
    wd, ws, ca, cs = runs["warden_deprecation"], runs["warden_snapshots"], runs["custodian_ami"], runs["custodian_snapshots"]
    print(
        f"Estate: {estate['images']} images in {estate['families']} families ({estate['deadlines_set']} with a deadline), "
        f"{estate['deregistered_images']} more deregistered (their snapshots orphaned), {estate['snapshots']} snapshots "
        f"({estate['hand_made_snapshots']} hand-made), {estate['launch_templates']} launch templates with "
        f"{estate['launch_template_versions']} versions naming {estate['images_in_launch_templates']} images, "
        f"{estate['auto_scaling_groups']} Auto Scaling groups, {estate['launch_configurations']} launch configurations, "
        f"{estate.get('shared_images', 0)} images shared with another account, "
        f"{estate['instances']} instances on {estate['images_in_instances']} images. Seeded in {estate['seed_seconds']:.0f} s.\n"
    )
    print("| job | tool | wall time | requests | of which in moto | flagged |")
    print("|---|---|---|---|---|---|")
    dep = wd["found"]
    print(
        f"| old unused images | AMI Warden `deprecation --dry-run` | {wd['wall']:.1f} s | {requests(wd)} | {server_seconds(wd):.1f} s | "
        f"{dep['flagged']} to deregister of {dep['images']} ({dep['to_stamp']} deadlines to stamp) |"
    )
    print(f"| old unused images | Cloud Custodian `ami` image-age + unused | {ca['wall']:.1f} s | {requests(ca)} | {server_seconds(ca):.1f} s | {ca['found']['flagged']} |")
    cac, csc = runs.get("custodian_ami_careful"), runs.get("custodian_snapshots_careful")
    if cac:
        print(f"| old unused images | Cloud Custodian `ami` image-age + unused + not cross-account | {cac['wall']:.1f} s | {requests(cac)} | {server_seconds(cac):.1f} s | {cac['found']['flagged']} |")
    snap = ws["found"]
    print(
        f"| orphaned snapshots | AMI Warden `snapshots --dry-run` | {ws['wall']:.1f} s | {requests(ws)} | {server_seconds(ws):.1f} s | "
        f"{snap['flagged']} to delete of {snap['decided']} decided |"
    )
    print(f"| orphaned snapshots | Cloud Custodian `ebs-snapshot` age + unused | {cs['wall']:.1f} s | {requests(cs)} | {server_seconds(cs):.1f} s | {cs['found']['flagged']} |")
    if csc:
        print(f"| orphaned snapshots | Cloud Custodian `ebs-snapshot` age + unused + not cross-account | {csc['wall']:.1f} s | {requests(csc)} | {server_seconds(csc):.1f} s | {csc['found']['flagged']} |")
    if "warden_snapshots_again" in runs:
        wa = runs["warden_snapshots_again"]
        print(
            f"| orphaned snapshots, next day | AMI Warden `snapshots --dry-run` again | {wa['wall']:.1f} s | {requests(wa)} | "
            f"{server_seconds(wa):.1f} s | {wa['found']['flagged']} to delete of {wa['found']['decided']} decided |"
        )
    both_row("both", (wd, ws), (ca, cs))
    if cac and csc:
        both_row("both, Custodian with cross-account", (wd, ws), (cac, csc))
        if "warden_snapshots_again" in runs:
            both_row("both, the next day, Custodian with cross-account", (wd, runs["warden_snapshots_again"]), (cac, csc))
    if "warden_exposure" in runs:
        we = runs["warden_exposure"]
        print(
            f"| (the exposure job) | AMI Warden `exposure`, which writes the share ledger | {we['wall']:.1f} s | {requests(we)} | "
            f"{server_seconds(we):.1f} s | not compared |"
        )
    check = runs.get("enforce_check")
    if check:
        wr, wp = runs["warden_retire"], runs["warden_reap"]
        print(
            f"| retire old unused images, for real | AMI Warden `deprecation --enforce` | {wr['wall']:.1f} s | {requests(wr)} | "
            f"{server_seconds(wr):.1f} s | {check['deregistered']} deregistered ({check['deregistered_in_recycle_bin']} in the Recycle Bin), {check['deadlines_stamped']} deadlines stamped |"
        )
        print(
            f"| delete orphaned snapshots, for real | AMI Warden `snapshots --enforce` (after the retirements) | {wp['wall']:.1f} s | "
            f"{requests(wp)} | {server_seconds(wp):.1f} s | {check['deleted']} deleted ({check['deleted_in_recycle_bin']} in the Recycle Bin) |"
        )
    print()
    print("Requests by operation (count, time moto spent on them):\n")
    extra = [
        runs[k]
        for k in ("custodian_ami_careful", "custodian_snapshots_careful", "warden_snapshots_again", "warden_exposure", "warden_retire", "warden_reap")
        if k in runs
    ]
    for run in (wd, ws, ca, cs, *extra):
        print(f"- {run['name']}: {by_operation(run)}")
    print()
    print(f"- AMI Warden deprecation kept, by reason: {json.dumps(dep['kept'])}")
    print(
        f"- AMI Warden snapshots kept, by reason: {json.dumps(snap['kept'])}; not from images: {snap['not_from_images']}; "
        f"with live images: {snap['with_live_images']}; errors: {snap['errors']}"
    )
    print(
        f"- Cloud Custodian's own policy execution time (its metadata.json; the rest of its wall time is start-up): "
        f"ami {ca['found']['policy_seconds']:.1f} s, snapshots {cs['found']['policy_seconds']:.1f} s"
        + (f"; with cross-account: ami {cac['found']['policy_seconds']:.1f} s, snapshots {csc['found']['policy_seconds']:.1f} s" if cac and csc else "")
    )
    kept = cross["images_flagged_by_custodian_kept_by_warden"]
    print(
        f"- Images Cloud Custodian flags and AMI Warden keeps: {sum(kept.values())} ({json.dumps(kept)}); "
        f"those in use are used by: {json.dumps(cross['of_which_in_use_by'])}"
    )
    if careful:
        kept = careful["images_flagged_by_custodian_kept_by_warden"]
        print(
            f"- Images Cloud Custodian with cross-account flags and AMI Warden keeps: {sum(kept.values())} "
            f"({json.dumps(kept)}); those in use are used by: {json.dumps(careful['of_which_in_use_by'])}"
        )
    print(
        f"- Snapshots Cloud Custodian flags: {cross['snapshots_flagged_by_both']} also flagged by AMI Warden, "
        f"{cross['snapshots_flagged_by_custodian_not_from_images']} that no image ever used (hand-made; never a reaper candidate)"
    )
    if check:
        print(
            f"- Enforce mode, read back from EC2 afterwards: {check['deregistered']} images deregistered "
            f"({check['reported_deregistered']} reported), of the {check['planned_in_report_mode']} report mode planned: "
            f"{check['deregistered_not_planned']} deregistered that were not planned, {check['planned_not_deregistered']} planned and kept; "
            f"{check['deregistered_in_recycle_bin']} of them in the Recycle Bin; deregistered although in use: "
            f"{check['deregistered_in_use']}, although shared: {check['deregistered_shared']}; snapshots gone with them: "
            f"{check['snapshots_gone_with_retirements']}; errors: {check['retire_errors']}"
        )
        print(
            f"- Then {check['deleted']} snapshots deleted ({check['reap_deleted']} reported, {check['deleted_in_recycle_bin']} in the Recycle Bin), {check['deleted_orphans']} of the "
            f"{check['orphans_before']} orphans there were before; deleted although a retired image (restorable from the Recycle Bin) "
            f"has them: {check['deleted_of_retired_images']}, although a registered image has them: {check['deleted_of_registered_images']}, "
            f"hand-made: {check['deleted_hand_made']}; kept, by reason: {json.dumps(check['reap_kept'])}; errors: {check['reap_errors']}"
        )
    # `ami-warden exposure` exits 1 when it finds an exposure, which the estate has.
    for run in (wd, ws, ca, cs, *(r for r in extra if r is not runs.get("warden_exposure"))):
        if run["exit"] != 0:
            print(f"- {run['name']} exited {run['exit']}")


def rerender(work):
    """Prints the report again from a kept work directory (`BENCH_KEEP=1`)."""
    saved = json.load(open(os.path.join(work, "runs.json")))
    runs = saved["runs"]
    for key, policy in CUSTODIAN_POLICY_NAMES.items():
        if f"custodian_{key}" in runs:
            runs[f"custodian_{key}"]["found"] = custodian_found(os.path.join(work, f"custodian-{key}"), policy)
    report(saved["estate"], runs, cross_check(work, runs), careful_check(work, runs))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        rerender(sys.argv[2])
    else:
        main()
