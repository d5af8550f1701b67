"""Creates the DynamoDB tables of template.yaml on the local stack, with the template's own
key schema, attribute definitions, indexes and billing mode, so local and deployed tables
cannot differ. Table names come from the environment variables the functions read.

Adds the template's Recycle Bin rules (`AWS::Rbin::Rule`, each `!Ref` to a parameter taken at
its default) to the local stack's region too, through the local extension's rules endpoint
(`dev/moto_ext/recycle_bin.py`): the reaper deletes and the enforcer retires only where such a
rule keeps what they tag, as on a deployment. A rule already there is not added twice.

Local stack only: refuses any endpoint that is not loopback."""
import json
import os
import sys
import urllib.request
from urllib.parse import urlparse

import boto3
import yaml

# Logical id in template.yaml -> (environment variable, local default name).
TABLES = {"LineageTable": ("LINEAGE_TABLE", "ami-warden-lineage")}


class CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


CfnLoader.add_multi_constructor("!", _tag)


def main(template_path):
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if urlparse(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"create_tables: AWS_ENDPOINT_URL={endpoint!r} is not a loopback endpoint")
    with open(template_path) as f:
        template = yaml.load(f, Loader=CfnLoader)
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    existing = set(client.list_tables()["TableNames"])
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        if logical_id not in TABLES:
            sys.exit(f"create_tables: no local name for table {logical_id}; add it to TABLES")
        variable, default = TABLES[logical_id]
        name = os.environ.get(variable) or default
        if name in existing:
            print(f"create_tables: {name} exists", file=sys.stderr)
            continue
        props = resource["Properties"]
        args = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        client.create_table(**args)
        print(f"create_tables: created {name} ({logical_id})", file=sys.stderr)
    add_recycle_bin_rules(template, endpoint)


def add_recycle_bin_rules(template, endpoint):
    region = boto3.session.Session().region_name or "us-east-1"
    rbin = boto3.client("rbin", endpoint_url=endpoint, region_name=region)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Rbin::Rule":
            continue
        rule = json.loads(json.dumps(resource["Properties"]))
        period = rule["RetentionPeriod"]
        if isinstance(period["RetentionPeriodValue"], str):
            period["RetentionPeriodValue"] = int(template["Parameters"][period["RetentionPeriodValue"]]["Default"])
        tags = rule.get("ResourceTags", [])
        if rbin.list_rules(ResourceType=rule["ResourceType"], ResourceTags=tags)["Rules"]:
            print(f"create_tables: Recycle Bin rule {logical_id} exists in {region}", file=sys.stderr)
            continue
        request = urllib.request.Request(
            endpoint.rstrip("/") + "/moto-ext/recycle-bin/rules",
            data=json.dumps({**rule, "Region": region}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request) as answer:
            identifier = json.load(answer)["Identifier"]
        print(f"create_tables: added Recycle Bin rule {logical_id} in {region} ({identifier})", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
