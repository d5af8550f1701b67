"""Creates the DynamoDB tables of template.yaml on the local stack, with the template's own
key schema, attribute definitions, indexes and billing mode, so local and deployed tables
cannot differ. Table names come from the environment variables the functions read.
Local stack only: refuses any endpoint that is not loopback."""
import os
import sys
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


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
