"""Checks that `dev/moto_ext/ec2_fast.py` changes what moto costs, never what it answers: on the
same estate, every read is played twice, through moto with `ec2.py` alone and with
`ec2_fast.py` too, and the two responses must be identical, byte for byte (status and body,
errors included: moto's EC2 bodies carry no random request id); and every EC2 response of the
run, writes included, is rendered twice, by moto's own renderer and by the remembered one, and
the two must be identical.

    PYTHONPATH=dev .local/venv/bin/python dev/bench_ec2_equivalence.py [SEED...]

Runs in-process (moto's `mock_aws`, no server, no network), with moto's 44 default images
loaded (six owners, public; not its 1,177 regional ones, to stay quick); seeds 1 and 2 unless
given, some 15 s each. `dev/bench sweeps` runs it (seed 1) before the benchmark. It exits 1 on
the first difference, printing the request and both answers around the first character that
differs. It also renders 3,000 random bodies as XML with `ec2_fast` and with xmltodict (same
text, or the same error).

The estate is randomised from the seed: images made by RegisterImage (from one or two existing
snapshots, or none), CreateImage (with tags) and CopyImage; tags with XML-special and non-ASCII
characters, added and removed; disabled, deprecated, public and shared images; deregistered
images (some with their snapshots); snapshots with descriptions (some with `*`, `?`, `[`);
launch templates with many versions, some naming unknown images, some with another default;
instances from images and templates, running, stopped and terminated. It is read three times,
changed in between. Reads: DescribeImages (all, by owner, by executable user, by id, paged
with MaxResults/NextToken, with filters by id, name, state, snapshot id, owner alias, public,
tags, creation date, architecture, wildcards, several values, several filters, unknown
filters, unknown and malformed ids), DescribeSnapshots (all, by owner, by id, by description,
volume size, encryption, tags, unknown ids), DescribeImageReferences (chunks of 50, unknown
and repeated ids), DescribeInstances (filters, paging), DescribeLaunchTemplates,
DescribeLaunchTemplateVersions, DescribeTags, DescribeVolumes, DescribeImageAttribute,
DescribeSnapshotAttribute, GetImageAncestry.
"""
import os
import random
import re
import sys
import time
from datetime import datetime, timedelta, timezone

import boto3
import xmltodict
from botocore.config import Config
from moto import mock_aws
from moto.core.serialize import EC2Serializer
from moto.ec2.models import amis as moto_amis

from moto_ext import ec2, ec2_fast

REGION = "us-east-1"
ODD_TEXT = ["plain", "a*b", "what?", "[x]", "<b> & \"q\" 'a'", "ünïcödé ✓", "  spaced  ", "x" * 200]


class Differ(Exception):
    pass


_serialize = EC2Serializer.serialize
RENDERED = {"responses": 0, "differences": []}
TIMES = {"moto": 0.0, "ec2_fast": 0.0}


def serialize_twice(self, result):
    """EC2Serializer.serialize, by moto's renderer and by the remembered one (see the doc).
    A difference is noted, not raised: moto would turn an exception here into a response."""
    installed = bool(ec2_fast._replaced)
    ec2_fast.uninstall()
    plain = _serialize(self, result)
    ec2_fast.install()
    fast = _serialize(self, result)
    if not installed:
        ec2_fast.uninstall()
    RENDERED["responses"] += 1
    if plain != fast:
        RENDERED["differences"].append(f"rendering of {self.operation_name} differs:\n{where(plain, fast)}")
    return plain


def where(plain, fast):
    """The two responses around their first difference."""
    a, b = repr(plain), repr(fast)
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - 300)
    return f"  at character {at}\n  moto:      ...{a[start:at + 300]}...\n  ec2_fast:  ...{b[start:at + 300]}..."


def check_rendering():
    if RENDERED["differences"]:
        raise Differ(RENDERED["differences"][0])


class Recorder:
    """The raw status and body of each response of a client."""

    def __init__(self, client):
        self.last = None
        client.meta.events.register("after-call.ec2", self.after_call)

    def after_call(self, http_response, **_):
        self.last = (http_response.status_code, http_response.content)


def call(c, rec, op, args):
    rec.last = None
    try:
        getattr(c, op)(**args)
    except Differ:
        raise
    except Exception as e:  # noqa: BLE001 - the raw response is what is compared
        if rec.last is None:
            return ("exception", type(e).__name__, str(e))
    return rec.last


def both(c, rec, op, args):
    """One read, without and with ec2_fast; the two raw responses. (Compared whole, so the
    renderer is not also checked twice here, and the times are those of one rendering.)"""
    check_rendering()
    EC2Serializer.serialize = _serialize
    try:
        ec2_fast.uninstall()
        started = time.perf_counter()
        plain = call(c, rec, op, args)
        TIMES["moto"] += time.perf_counter() - started
        ec2_fast.install()
        started = time.perf_counter()
        fast = call(c, rec, op, args)
        TIMES["ec2_fast"] += time.perf_counter() - started
    finally:
        EC2Serializer.serialize = serialize_twice
    if plain != fast:
        raise Differ(f"{op}({args!r:.500}) differs:\n{where(plain, fast)}")
    return plain


def pages(c, rec, op, args):
    """Every page of a listing, each played both ways, following the pages' NextToken."""
    args = dict(args)
    out = []
    for _ in range(500):
        status, body = both(c, rec, op, args)[:2]
        out.append(status)
        m = re.search(rb"<nextToken>([^<]*)</nextToken>", body) if isinstance(body, bytes) else None
        if not m:
            return out
        args["NextToken"] = m.group(1).decode()
    raise Differ(f"{op}: more than 500 pages")


def build(c, rng, n_images):
    """The estate (see the module doc). Returns what the reads pick from."""
    vol = c.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    vol2 = c.create_volume(AvailabilityZone=f"{REGION}b", Size=30, Encrypted=True)["VolumeId"]
    snaps = []
    for k in range(12):
        desc = rng.choice(ODD_TEXT + [f"nightly backup {k}", f"Created by CreateImage(i-0) for ami-{k:08x}"])
        s = c.create_snapshot(VolumeId=rng.choice([vol, vol2]), Description=desc)["SnapshotId"]
        snaps.append(s)
        if rng.random() < 0.4:
            c.create_tags(Resources=[s], Tags=[{"Key": rng.choice(["Name", "team", "t*"]), "Value": rng.choice(ODD_TEXT)}])
    golden = c.register_image(
        Name="golden", RootDeviceName="/dev/xvda", VirtualizationType="hvm", Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snaps[0], "VolumeSize": 8}}],
    )["ImageId"]
    images = [golden]
    instances = []
    for k in range(4):
        spec = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"builder-{k}"}]}] if k % 2 else []
        i = c.run_instances(ImageId=golden, MinCount=1, MaxCount=rng.choice([1, 2]), InstanceType="t3.micro", TagSpecifications=spec)
        instances += [x["InstanceId"] for x in i["Instances"]]
    for n in range(n_images):
        kind = rng.random()
        name = f"svc{n % 7}-build-{n:04d}" + rng.choice(["", " ✓", "&<>"])
        if kind < 0.55:
            spec = []
            if rng.random() < 0.5:
                spec = [{"ResourceType": "image", "Tags": [{"Key": rng.choice(["Name", "family", "owner"]), "Value": rng.choice(ODD_TEXT)} for _ in range(rng.randrange(1, 4))]}]
            image = c.create_image(InstanceId=rng.choice(instances), Name=name, Description=rng.choice(["", "d", "x & y"]), TagSpecifications=spec)["ImageId"]
        elif kind < 0.8:
            image = c.copy_image(SourceImageId=rng.choice(images), SourceRegion=REGION, Name=name)["ImageId"]
        elif kind < 0.9:
            picks = rng.sample(snaps, rng.choice([1, 2]))
            bdm = [{"DeviceName": f"/dev/xvd{'ab'[j]}", "Ebs": {"SnapshotId": s}} for j, s in enumerate(picks)]
            image = c.register_image(Name=name, RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm)["ImageId"]
        else:
            image = c.register_image(Name=name)["ImageId"]
        images.append(image)
        if rng.random() < 0.1:
            r = c.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")
            instances.append(r["Instances"][0]["InstanceId"])
    templates = []
    for t in range(6):
        lt = c.create_launch_template(LaunchTemplateName=f"lt-{t}", LaunchTemplateData={"ImageId": rng.choice(images), "InstanceType": "t3.micro"})["LaunchTemplate"]["LaunchTemplateId"]
        templates.append(lt)
        for _ in range(rng.randrange(0, 9)):
            data = {"InstanceType": "t3.small"}
            if rng.random() < 0.85:
                data["ImageId"] = rng.choice(images + ["ami-0000000000unknown"])
            c.create_launch_template_version(LaunchTemplateId=lt, LaunchTemplateData=data, VersionDescription=rng.choice(ODD_TEXT))
        if rng.random() < 0.5:
            versions = c.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]
            c.modify_launch_template(LaunchTemplateId=lt, DefaultVersion=str(rng.choice(versions)["VersionNumber"]))
    r = c.run_instances(LaunchTemplate={"LaunchTemplateId": templates[0]}, MinCount=1, MaxCount=1)
    instances.append(r["Instances"][0]["InstanceId"])
    return {"images": images, "snapshots": snaps, "instances": instances, "templates": templates, "gone": []}


def change(c, rng, estate):
    """Between reads: state, tags, permissions, deadlines, deregistrations."""
    images, instances = estate["images"], estate["instances"]
    live = [i for i in images if i not in estate["gone"]]
    for image in rng.sample(live, max(1, len(live) // 8)):
        what = rng.random()
        if what < 0.2:
            c.disable_image(ImageId=image)
        elif what < 0.3:
            c.enable_image(ImageId=image)
        elif what < 0.5:
            at = datetime.now(timezone.utc) + timedelta(days=rng.randrange(1, 400))
            c.enable_image_deprecation(ImageId=image, DeprecateAt=at)
        elif what < 0.55:
            c.disable_image_deprecation(ImageId=image)
        elif what < 0.65:
            c.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [rng.choice([{"Group": "all"}, {"UserId": "111122223333"}])]})
        elif what < 0.8:
            c.create_tags(Resources=[image], Tags=[{"Key": rng.choice(["Name", "family", "keep", "aws-x"]), "Value": rng.choice(ODD_TEXT)}])
        elif what < 0.85:
            c.delete_tags(Resources=[image], Tags=[{"Key": rng.choice(["Name", "family"])}])
        else:
            try:
                c.deregister_image(ImageId=image, DeleteAssociatedSnapshots=rng.random() < 0.5)
                estate["gone"].append(image)
            except Exception:  # noqa: BLE001 - the same request fails the same way either way
                pass
    for instance in rng.sample(instances, max(1, len(instances) // 4)):
        try:
            if rng.random() < 0.6:
                c.stop_instances(InstanceIds=[instance])
            else:
                c.terminate_instances(InstanceIds=[instance])
        except Exception:  # noqa: BLE001
            pass
    for lt in rng.sample(estate["templates"], 2):
        c.create_launch_template_version(LaunchTemplateId=lt, LaunchTemplateData={"ImageId": rng.choice(images)})


def reads(c, rec, rng, estate):
    images, snaps = estate["images"], estate["snapshots"]
    described = c.describe_snapshots()["Snapshots"]
    all_snaps = [s["SnapshotId"] for s in described]
    image_snaps = [s for s in all_snaps if s not in snaps]
    every = dict(Owners=["self"], IncludeDeprecated=True, IncludeDisabled=True)
    count = 0

    def img(**args):
        nonlocal count
        count += 1
        both(c, rec, "describe_images", args)

    img(**every)
    img()
    img(Owners=["amazon"])
    img(Owners=["801119661308", "self"], IncludeDisabled=True)
    img(ExecutableUsers=["self"])
    img(ExecutableUsers=["all"])
    for size in (5, 7, 1000):
        count += 1
        pages(c, rec, "describe_images", dict(every, MaxResults=size))
    count += 1
    pages(c, rec, "describe_images", dict(MaxResults=6, Owners=["self"]))
    img(ImageIds=rng.sample(images, 3), MaxResults=5)
    for _ in range(4):
        img(ImageIds=rng.sample(images, rng.randrange(1, 6)), IncludeDeprecated=True, IncludeDisabled=rng.random() < 0.5)
    img(ImageIds=estate["gone"][:2] or images[:1])
    img(ImageIds=["ami-00000000000000000"])
    img(ImageIds=["not-an-ami"])
    ids50 = rng.sample(images, min(50, len(images)))
    filters = [
        [{"Name": "image-id", "Values": ids50[:1]}],
        [{"Name": "image-id", "Values": ids50 + ["ami-nothere"]}],
        [{"Name": "image-id", "Values": [images[1][:6] + "*"]}],
        [{"Name": "image-id", "Values": ["ami-?" + images[1][5:]]}],
        [{"Name": "name", "Values": ["svc1-build-0001", "golden"]}],
        [{"Name": "name", "Values": ["svc2*"]}],
        [{"Name": "name", "Values": ["svc[34]-*"]}],
        [{"Name": "state", "Values": ["available"]}],
        [{"Name": "state", "Values": ["disabled", "pending"]}],
        [{"Name": "block-device-mapping.snapshot-id", "Values": [rng.choice(snaps)]}],
        [{"Name": "block-device-mapping.snapshot-id", "Values": [rng.choice(image_snaps or snaps)]}],
        [{"Name": "block-device-mapping.snapshot-id", "Values": rng.sample(snaps, 2)}],
        [{"Name": "block-device-mapping.snapshot-id", "Values": ["snap-*"]}],
        [{"Name": "owner-alias", "Values": ["amazon"]}],
        [{"Name": "owner-id", "Values": ["123456789012"]}],
        [{"Name": "is-public", "Values": ["true"]}],
        [{"Name": "is-public", "Values": ["false"]}],
        [{"Name": "tag:Name", "Values": ODD_TEXT[:3]}],
        [{"Name": "tag:family", "Values": ["*"]}],
        [{"Name": "tag-key", "Values": ["Name"]}],
        [{"Name": "tag-value", "Values": ["plain", "a*b"]}],
        [{"Name": "architecture", "Values": ["x86_64"]}],
        [{"Name": "virtualization-type", "Values": ["hvm"]}],
        [{"Name": "platform", "Values": ["windows"]}],
        [{"Name": "creation-date", "Values": ["2017*"]}],
        [{"Name": "source-instance-id", "Values": estate["instances"][:2]}],
        [{"Name": "state", "Values": ["available"]}, {"Name": "name", "Values": ["svc1*"]}],
        [{"Name": "image-id", "Values": ["ami-nothere"]}, {"Name": "no-such-filter", "Values": ["x"]}],
        [{"Name": "no-such-filter", "Values": ["x"]}],
        [{"Name": "image-id", "Values": []}],
    ]
    for f in filters:
        img(Filters=f, IncludeDisabled=rng.random() < 0.5, Owners=rng.choice([["self"], []]))
    img(Filters=[{"Name": "image-id", "Values": ids50}], Owners=["self"], MaxResults=5)

    snap_reads = [
        {},
        {"OwnerIds": ["self"]},
        {"OwnerIds": ["self"], "MaxResults": 5},
        {"SnapshotIds": rng.sample(all_snaps, 3)},
        {"SnapshotIds": [all_snaps[0], "snap-00000000000000000"]},
        {"SnapshotIds": ["snap-00000000000000000"]},
        {"OwnerIds": ["self"], "Filters": [{"Name": "description", "Values": ["Created by CreateImage*"]}]},
        {"OwnerIds": ["self"], "Filters": [{"Name": "description", "Values": ["Copied for DestinationAmi *"]}]},
        {"Filters": [{"Name": "description", "Values": ODD_TEXT}]},
        {"Filters": [{"Name": "description", "Values": ["nightly backup 3"]}]},
        {"Filters": [{"Name": "snapshot-id", "Values": rng.sample(all_snaps, 4)}]},
        {"Filters": [{"Name": "volume-size", "Values": ["30"]}]},
        {"Filters": [{"Name": "encrypted", "Values": ["true"]}]},
        {"Filters": [{"Name": "status", "Values": ["completed"]}, {"Name": "owner-id", "Values": ["123456789012"]}]},
        {"Filters": [{"Name": "tag:Name", "Values": ["plain", "what?"]}]},
        {"Filters": [{"Name": "tag-key", "Values": ["t*"]}]},
        {"Filters": [{"Name": "no-such-filter", "Values": ["x"]}]},
    ]
    for args in snap_reads:
        count += 1
        both(c, rec, "describe_snapshots", args)

    refs = images + estate["gone"] + ["ami-0000000000unknown"]
    rng.shuffle(refs)
    for k in range(0, len(refs), 50):
        count += 1
        both(c, rec, "describe_image_references", {"ImageIds": refs[k : k + 50], "IncludeAllResourceTypes": True})
    count += 1
    both(c, rec, "describe_image_references", {"ImageIds": [images[0], images[0], images[1]]})

    states = ["pending", "running", "shutting-down", "stopping", "stopped"]
    for args in (
        {},
        {"Filters": [{"Name": "instance-state-name", "Values": states}], "MaxResults": 5},
        {"Filters": [{"Name": "image-id", "Values": images[:3]}]},
        {"InstanceIds": estate["instances"][:3]},
        {"InstanceIds": ["i-00000000000000000"]},
    ):
        count += 1
        pages(c, rec, "describe_instances", args)
    count += 2
    both(c, rec, "describe_launch_templates", {})
    both(c, rec, "describe_tags", {"Filters": [{"Name": "resource-id", "Values": images[:5]}]})
    for lt in estate["templates"]:
        for args in ({}, {"Versions": ["$Latest", "$Default"]}, {"MaxResults": 3}):
            count += 1
            both(c, rec, "describe_launch_template_versions", dict(args, LaunchTemplateId=lt))
    count += 4
    both(c, rec, "describe_tags", {})
    both(c, rec, "describe_tags", {"Filters": [{"Name": "resource-id", "Values": ["ami-*"]}]})
    both(c, rec, "describe_volumes", {})
    both(c, rec, "describe_vpcs", {})
    for image in rng.sample(images, 4):
        for attribute in ("launchPermission", "description"):
            count += 1
            both(c, rec, "describe_image_attribute", {"ImageId": image, "Attribute": attribute})
        count += 1
        both(c, rec, "get_image_ancestry", {"ImageId": image})
    for snap in rng.sample(all_snaps, 3):
        count += 1
        both(c, rec, "describe_snapshot_attribute", {"SnapshotId": snap, "Attribute": "createVolumePermission"})
    return count


def random_body(rng, depth=0):
    """A random dict for the XML renderer, with what moto produces and what it does not."""
    names = ["a", "item", "snapshotId", "@attr", "@xmlns", "#text", "", "@"]
    leaves = ["", " ", "a&b<c>d]]>", "q\"'", "\n\r\t", "ünï ✓", None, True, False, 0, -12, 1.5, []]
    if rng.random() < 0.03:
        names, leaves = ["#comment", "bad name", "x/y", 5], [b"by", (1, 2), {"x"}]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if depth > 1 and rng.random() < 0.05:
        return [rng.choice(leaves), [rng.choice(leaves)]]
    if rng.random() < 0.25:
        return [random_body(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    body = {}
    for _ in range(rng.randrange(0, 5)):
        name = rng.choice(names)
        leaf = isinstance(name, str) and name[:1] in "@#" and rng.random() < 0.95
        body[name] = rng.choice(leaves[:-1]) if leaf else random_body(rng, depth + 1)
    return body


class _Plain:
    pretty_print = False


def check_xml(seed, count=3000):
    """ec2_fast's XML renderer against xmltodict itself on random bodies: same text, or the
    same error."""
    rng = random.Random(seed)
    for _ in range(count):
        root = rng.choice(["R"] * 10 + ["#comment", "a b"])
        value = random_body(rng, 1) if rng.random() < 0.1 else {"x": random_body(rng, 1), "@a": rng.choice(["1", "a<'\"&>"]), "y": random_body(rng, 1)}
        body = {root: value}
        outcomes = []
        for render in (
            lambda: xmltodict.unparse(body, full_document=True, pretty=False, short_empty_elements=True),
            lambda: ec2_fast._xml(_Plain(), body),
        ):
            try:
                outcomes.append(("ok", render()))
            except Exception as e:  # noqa: BLE001 - the error is part of the answer
                outcomes.append(("error", type(e).__name__, str(e)))
        if outcomes[0] != outcomes[1]:
            raise Differ(f"XML of {body!r:.1000} differs:\n{where(outcomes[0], outcomes[1])}")
    return count


def play(seed, n_images):
    rng = random.Random(seed)
    with mock_aws():
        c = boto3.client("ec2", region_name=REGION, config=Config(retries={"total_max_attempts": 1}))
        rec = Recorder(c)
        estate = build(c, rng, n_images)
        n = reads(c, rec, rng, estate)
        for _ in range(2):
            change(c, rng, estate)
            n += reads(c, rec, rng, estate)
        check_rendering()
    return n, estate


def main():
    seeds = [int(a) for a in sys.argv[1:]] or [1, 2]
    # In-process only: an endpoint in the environment (the local stack's exports) would send
    # these requests to a real server, past mock_aws.
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    os.environ["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
    # moto's 44 default images (six owners, public), not its 1,177 regional ones as well:
    # the regional ones are only read from files when MOTO_AMIS_PATH is unset.
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "true"
    os.environ["MOTO_AMIS_PATH"] = "(read at import only)"
    assert len(moto_amis.AMIS) == 44
    ec2.install()
    EC2Serializer.serialize = serialize_twice
    try:
        for seed in seeds:
            TIMES["moto"] = TIMES["ec2_fast"] = 0.0
            RENDERED["responses"] = 0
            RENDERED["differences"] = []
            try:
                xml_bodies = check_xml(seed)
                n, estate = play(seed, 90)
            except Exception as e:
                if not isinstance(e, Differ) and not RENDERED["differences"]:
                    raise
                first = e if isinstance(e, Differ) else RENDERED["differences"][0]
                print(f"bench_ec2_equivalence: seed {seed}: moto and ec2_fast differ: {first}", file=sys.stderr)
                sys.exit(1)
            print(
                f"bench_ec2_equivalence: seed {seed}: identical ({n} reads played both ways on "
                f"{len(estate['images'])} images; {RENDERED['responses']} responses rendered both ways; "
                f"{xml_bodies} random bodies rendered as XML both ways; "
                f"reads took {TIMES['moto']:.1f} s without ec2_fast, {TIMES['ec2_fast']:.1f} s with)",
                file=sys.stderr,
            )
    finally:
        EC2Serializer.serialize = _serialize


if __name__ == "__main__":
    main()
