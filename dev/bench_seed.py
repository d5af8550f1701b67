"""Seeds the sweep benchmark's estate on a fresh local moto (loopback only), through EC2 and
Auto Scaling calls as a real account would get them:

    python dev/bench_seed.py build IMAGES EVENTS_DIR > estate.json
    ami-warden replay EVENTS_DIR          # the recorder notes the doomed images' snapshots
    python dev/bench_seed.py deregister EVENTS_DIR >> estate.json

- a golden image registered from a snapshot, and one builder instance per family launched
  from it (the instances use the golden image);
- IMAGES live images in families of `FAMILY` (100): four in five made by CreateImage from the
  family's builder (snapshot "Created by CreateImage(i-…) for ami-…", as AWS writes it), one
  in five by CopyImage of an earlier image of the family ("Copied for DestinationAmi …");
- one image in ten more, made the same way and then deregistered: their snapshots are the
  orphans both tools look for;
- deprecation deadlines on nine images in ten (each two minutes after it is set:
  EnableImageDeprecation refuses the past), so that a plan a day ahead finds them due and, a
  few minutes later, an enforce-mode sweep finds them due for real; the rest have none;
- launch templates with several versions, each naming an image; Auto Scaling groups on some
  of them and on launch configurations; more instances launched from images, some stopped;
- hand-made snapshots of a volume (no image ever used them), which the reaper never
  considers and Cloud Custodian's `unused` filter does;
- one live image in 200 shared with another account (launch permission), which AMI Warden
  keeps (another account may launch it) and Cloud Custodian's policy does not look at.

`build` also writes one `EC2 AMI State Change` (available) event per image that will be
deregistered into EVENTS_DIR, so that `ami-warden replay` records their snapshots in the
lineage table as the recorder would have on AWS (the reaper deletes only snapshots the lineage
confirms); `deregister` then deregisters those images (their snapshots stay, as on AWS).

Each step prints a JSON summary on stdout; `build` also writes `truth.json` beside EVENTS_DIR:
the images in use (launch template versions, instances, launch configurations), the shared
images and the hand-made snapshots, which no retirement or deletion may touch. Deterministic
for a given IMAGES (seeded RNG), apart from the deadlines' times.
"""
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

import boto3

FAMILY = 100
REGION = os.environ.get("AWS_REGION", "us-east-1")


def say(*args):
    print("bench_seed:", *args, file=sys.stderr, flush=True)


def clients():
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if urlparse(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"bench_seed: AWS_ENDPOINT_URL={endpoint!r} is not a loopback endpoint")
    return (
        boto3.client("ec2", region_name=REGION, endpoint_url=endpoint),
        boto3.client("autoscaling", region_name=REGION, endpoint_url=endpoint),
    )


def snapshot_count(ec2):
    return sum(len(p["Snapshots"]) for p in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"]))


def build(images_wanted, events_dir):
    os.makedirs(events_dir, exist_ok=True)
    rng = random.Random(42)
    ec2, asg = clients()
    started = time.monotonic()

    # The golden image, from a snapshot of a volume.
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    golden_snap = ec2.create_snapshot(VolumeId=volume, Description="golden root volume")["SnapshotId"]
    golden = ec2.register_image(
        Name="golden-base",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": golden_snap, "VolumeSize": 8}}],
        VirtualizationType="hvm",
        Architecture="x86_64",
    )["ImageId"]

    families = max(1, images_wanted // FAMILY)
    builders = []
    for f in range(families):
        i = ec2.run_instances(ImageId=golden, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
        builders.append(i["InstanceId"])
    say(f"golden {golden}, {families} builder instances")

    deregister_every = 10  # one extra image in ten is made and then deregistered
    total = images_wanted + images_wanted // deregister_every
    live, doomed = [], []
    by_family = {f: [] for f in range(families)}
    for n in range(total):
        f = n % families
        name = f"svc{f:03d}-build-{n:06d}"
        earlier = by_family[f]
        if earlier and n % 5 == 4:
            image = ec2.copy_image(SourceImageId=rng.choice(earlier), SourceRegion=REGION, Name=name)["ImageId"]
        else:
            image = ec2.create_image(InstanceId=builders[f], Name=name)["ImageId"]
        earlier.append(image)
        if n % (deregister_every + 1) == deregister_every:
            doomed.append(image)
        else:
            live.append(image)
        if (n + 1) % 1000 == 0:
            say(f"{n + 1}/{total} images ({time.monotonic() - started:.0f} s)")

    # Deadlines on nine live images in ten, each two minutes after it is set (EnableImageDeprecation
    # refuses the past): the report-mode runs plan a day ahead, and by the time the enforce-mode
    # runs start (after every report run) each deadline has passed for real.
    stamped, latest = 0, None
    for k, image in enumerate(live):
        if k % 10 != 9:
            at = (datetime.now(timezone.utc) + timedelta(minutes=2)).replace(second=0, microsecond=0)
            ec2.enable_image_deprecation(ImageId=image, DeprecateAt=at)
            stamped, latest = stamped + 1, at
    say(f"{stamped} deadlines set ({time.monotonic() - started:.0f} s)")

    # Launch templates: versions naming images (only some are $Default or $Latest).
    templates = max(1, images_wanted // 200)
    versions_per_template = 4
    template_images = set()
    template_ids = []
    for t in range(templates):
        picks = rng.sample(live, versions_per_template)
        lt = ec2.create_launch_template(
            LaunchTemplateName=f"bench-lt-{t:03d}",
            LaunchTemplateData={"ImageId": picks[0], "InstanceType": "t3.micro"},
        )["LaunchTemplate"]
        template_ids.append(lt["LaunchTemplateId"])
        for image in picks[1:]:
            ec2.create_launch_template_version(
                LaunchTemplateId=lt["LaunchTemplateId"], LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"}
            )
        template_images.update(picks)

    # Auto Scaling: groups on launch templates and on launch configurations (no instances).
    groups = max(1, templates // 5)
    lc_images = set()
    for g in range(groups):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"bench-asg-lt-{g:03d}",
            LaunchTemplate={"LaunchTemplateId": template_ids[g], "Version": "$Latest"},
            MinSize=0, MaxSize=0, DesiredCapacity=0, AvailabilityZones=[f"{REGION}a"],
        )
        image = rng.choice(live)
        lc_images.add(image)
        asg.create_launch_configuration(LaunchConfigurationName=f"bench-lc-{g:03d}", ImageId=image, InstanceType="t3.micro")
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"bench-asg-lc-{g:03d}", LaunchConfigurationName=f"bench-lc-{g:03d}",
            MinSize=0, MaxSize=0, DesiredCapacity=0, AvailabilityZones=[f"{REGION}a"],
        )

    # More instances, from images; one in four stopped.
    extra = max(1, images_wanted // 100)
    instance_images = {golden}
    for k in range(extra):
        image = rng.choice(live)
        instance_images.add(image)
        i = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
        if k % 4 == 3:
            ec2.stop_instances(InstanceIds=[i["InstanceId"]])

    # Images shared with a partner account: another account may launch them.
    shared = live[::200]
    for image in shared:
        ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": "222233334444"}]})

    # Hand-made snapshots (backups of a volume): no image ever used them.
    hand_made = max(1, images_wanted // 100)
    for k in range(hand_made):
        ec2.create_snapshot(VolumeId=volume, Description=f"nightly backup {k}")

    # The lineage of the images about to go: what the recorder writes when each becomes
    # available (its snapshots), so the reaper can confirm their snapshots are theirs.
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for image in doomed:
        event = {
            "version": "0",
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "detail-type": "EC2 AMI State Change",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": now,
            "region": REGION,
            "resources": [f"arn:aws:ec2:{REGION}::image/{image}"],
            "detail": {"RequestId": str(uuid.UUID(int=rng.getrandbits(128))), "ImageId": image, "State": "available", "ErrorMessage": ""},
        }
        with open(os.path.join(events_dir, f"{image}.json"), "w") as out:
            json.dump(event, out)
    summary = {
        "images": len(live) + 1,
        "families": families,
        "images_to_deregister": len(doomed),
        "deadlines_set": stamped,
        "hand_made_snapshots": hand_made,
        "shared_images": len(shared),
        "launch_templates": templates,
        "launch_template_versions": templates * versions_per_template,
        "auto_scaling_groups": 2 * groups,
        "launch_configurations": groups,
        "instances": families + extra,
        "images_in_launch_templates": len(template_images),
        "images_in_instances": len(instance_images),
        "images_in_launch_configurations": len(lc_images),
        "seed_seconds": round(time.monotonic() - started, 1),
        "latest_deadline": latest.isoformat() if latest else None,
    }
    # What a safe retirement must never touch, for the enforce-mode check (`bench_sweeps.py`).
    truth = {
        "in_use": sorted(template_images | instance_images | lc_images),
        "shared": sorted(shared),
        "hand_made_snapshots": [
            s["SnapshotId"]
            for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"])
            for s in page["Snapshots"]
            if s.get("Description", "").startswith("nightly backup ")
        ],
    }
    with open(os.path.join(events_dir, "..", "truth.json"), "w") as out:
        json.dump(truth, out)
    say(f"built in {summary['seed_seconds']} s")
    print(json.dumps(summary, indent=1))


def deregister(events_dir):
    ec2, _ = clients()
    doomed = sorted(f[: -len(".json")] for f in os.listdir(events_dir) if f.endswith(".json"))
    for image in doomed:
        ec2.deregister_image(ImageId=image)
    summary = {"deregistered_images": len(doomed), "snapshots": snapshot_count(ec2)}
    say(f"deregistered {len(doomed)} images")
    print(json.dumps(summary, indent=1))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "build":
        build(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "deregister":
        deregister(sys.argv[2])
    else:
        sys.exit("usage: bench_seed.py build IMAGES EVENTS_DIR | deregister EVENTS_DIR")


if __name__ == "__main__":
    main()
