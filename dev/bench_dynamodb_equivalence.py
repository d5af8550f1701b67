"""Checks that `dev/moto_ext/dynamodb.py` changes what moto costs, never what it answers: the
same requests, played on moto as shipped and on moto with the extension, must give identical
responses (items, counts, pages, returned values) and identical errors (code and message), and
leave identical tables.

    PYTHONPATH=dev .local/venv/bin/python dev/bench_dynamodb_equivalence.py

Runs in-process (moto's `mock_aws`, no server, no network). `dev/bench lineage` runs it before
the benchmark; it exits 1 on the first difference, printing the request.

Covered: Query of a table (whole partitions, `begins_with` and `BETWEEN` key conditions,
`Limit` paging, backwards, filters, projections, `Select=COUNT`, absent partitions), of a
global index, of a table without a sort key, a bad key condition; UpdateItem and
TransactWriteItems updates of the simple form the extension answers itself, and of every
neighbouring form it must leave to moto (conditions, duplicate or key attributes, missing
placeholders, empty strings, malformed numbers, ADD of numbers, of sets with duplicates, onto
an attribute of another type, nested paths, arithmetic, lower-case keywords, items over
400 KB), with `ReturnValues`; cancelled transactions.
"""
import os
import random
import sys

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

import moto.dynamodb.models as models
from moto_ext import dynamodb as ext

ORIGINAL = (Table.query, DynamoDBBackend.update_item, DynamoDBBackend.transact_write_items, models.copy)


def restore_moto():
    Table.query, DynamoDBBackend.update_item, DynamoDBBackend.transact_write_items, models.copy = ORIGINAL


def outcome(call, **kwargs):
    try:
        r = call(**kwargs)
        r.pop("ResponseMetadata", None)
        return ("ok", r)
    except ClientError as e:
        return ("error", e.response["Error"].get("Code"), e.response["Error"].get("Message"))


def scan_all(c, table):
    items, start = [], None
    while True:
        args = {"TableName": table}
        if start:
            args["ExclusiveStartKey"] = start
        r = c.scan(**args)
        items.extend(r["Items"])
        start = r.get("LastEvaluatedKey")
        if not start:
            return sorted(items, key=repr)


def query_pages(c, **kwargs):
    pages, start = [], None
    while True:
        args = dict(kwargs)
        if start:
            args["ExclusiveStartKey"] = start
        r = outcome(c.query, **args)
        pages.append(r)
        if r[0] != "ok":
            return pages
        start = r[1].get("LastEvaluatedKey")
        if not start:
            return pages


def random_update(rng, n):
    """One UpdateItem request: mostly the simple form, often one of its neighbours."""
    key = {"pk": {"S": f"P{rng.randrange(4)}"}, "sk": {"S": rng.choice(["NODE", "D#", "A#"]) + str(rng.randrange(30))}}
    count = rng.randrange(1, 8)
    attrs = rng.sample(["image_id", "region", "depth", "name", "account", "parent", "flag", "state", "g"], count)
    names = {f"#a{i}": a for i, a in enumerate(attrs)}
    values = {}
    sets = []
    for i, a in enumerate(attrs):
        kind = rng.random()
        if kind < 0.6:
            values[f":v{i}"] = {"S": f"{a}-{rng.randrange(5)}"}
        elif kind < 0.75:
            values[f":v{i}"] = {"N": str(rng.randrange(-50, 50))}
        elif kind < 0.85:
            values[f":v{i}"] = {"BOOL": rng.random() < 0.5}
        else:
            values[f":v{i}"] = rng.choice([{"S": ""}, {"N": "abc"}, {"N": "1e5"}, {"N": "007"}, {"L": [{"S": "x"}]}, {"M": {"k": {"S": "v"}}}, {"NULL": True}, {"S": "x" * 300000}])
        sets.append(f"#a{i} = :v{i}")
    expr = "SET " + ", ".join(sets)
    if rng.random() < 0.4:
        names["#s"] = rng.choice(["snapshot_ids", "snapshot_ids", "name", "depth"])
        values[":s"] = rng.choice([
            {"SS": [f"snap-{rng.randrange(6)}" for _ in range(rng.randrange(1, 3))]},
            {"SS": ["snap-1", "snap-1"]}, {"SS": []}, {"NS": ["1", "2"]}, {"N": "3"},
        ])
        expr += " ADD #s :s"
    args = {"TableName": "t", "Key": key, "UpdateExpression": expr, "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
    twist = rng.random()
    if twist < 0.05:
        args["UpdateExpression"] = expr.replace("SET", "set", 1)
    elif twist < 0.10:
        args["ExpressionAttributeNames"]["#k"] = "pk"
        args["UpdateExpression"] = args["UpdateExpression"].replace("SET ", "SET #k = :v0, ", 1)
    elif twist < 0.14:
        args["ExpressionAttributeNames"]["#d"] = attrs[0]
        args["UpdateExpression"] = args["UpdateExpression"].replace("SET ", "SET #d = :v0, ", 1)
    elif twist < 0.18:
        args["UpdateExpression"] = args["UpdateExpression"].replace(":v0", ":missing", 1)
    elif twist < 0.22:
        args["ConditionExpression"] = rng.choice(["attribute_exists(pk)", "attribute_not_exists(pk)"])
    elif twist < 0.25:
        args["UpdateExpression"] = args["UpdateExpression"].replace("#a0", "#a0.#n", 1)
        args["ExpressionAttributeNames"]["#n"] = "nested"
    elif twist < 0.28:
        values[":w"] = {"N": "1"}
        args["UpdateExpression"] = args["UpdateExpression"].replace(":v0", ":v0 + :w", 1)
    elif twist < 0.31:
        args["ExpressionAttributeValues"][":unused"] = {"S": "u"}
    elif twist < 0.34:
        args["Key"] = {"pk": key["pk"]}
    elif twist < 0.37:
        args["UpdateExpression"] = args["UpdateExpression"].replace("SET ", "SET #a0 = :v0, ", 1)
    if rng.random() < 0.3:
        args["ReturnValues"] = rng.choice(["ALL_NEW", "UPDATED_OLD", "UPDATED_NEW", "ALL_OLD", "NONE"])
    return args


SIMPLE = {"answered by the extension": 0}
_plan = ext._simple_plan


def _counted_plan(*args):
    plan = _plan(*args)
    if plan is not None:
        SIMPLE["answered by the extension"] += 1
    return plan


ext._simple_plan = _counted_plan


def play(patched, seed):
    restore_moto()
    if patched:
        ext.install()
    rng = random.Random(seed)
    log = []
    # In-process only: an endpoint in the environment would send these calls to a real server.
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    with mock_aws():
        c = boto3.client("dynamodb", region_name="us-east-1")
        c.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g")],
            GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}], "Projection": {"ProjectionType": "ALL"}}],
            BillingMode="PAY_PER_REQUEST",
        )
        c.create_table(
            TableName="h",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for i in range(400):
            item = {
                "pk": {"S": f"P{rng.randrange(6)}"},
                "sk": {"S": rng.choice(["A#", "D#", "NODE"]) + str(rng.randrange(1000))},
                "n": {"N": str(rng.randrange(50))},
                "pad": {"S": "x" * rng.randrange(6000)},
            }
            if rng.random() < 0.3:
                item["g"] = {"S": f"G{rng.randrange(3)}"}
            c.put_item(TableName="t", Item=item)
            c.put_item(TableName="h", Item={"pk": {"S": f"H{i % 7}"}, "v": {"N": str(i)}})
        for round_ in range(200):
            args = random_update(rng, round_)
            if rng.random() < 0.7:
                log.append(("update", args, outcome(c.update_item, **args)))
            else:
                actions = [{"Update": {k: v for k, v in random_update(rng, round_).items() if k != "ReturnValues"}} for _ in range(rng.randrange(1, 5))]
                if rng.random() < 0.2:
                    actions.append({"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "P0"}, "sk": {"S": "none"}}, "ConditionExpression": "attribute_exists(pk)"}})
                log.append(("transact", actions, outcome(c.transact_write_items, TransactItems=actions)))
        for p in ["P0", "P3", "P9"]:
            v = {":pk": {"S": p}}
            for extra in (
                {},
                {"Limit": 7},
                {"Limit": 5, "ScanIndexForward": False},
                {"ProjectionExpression": "sk", "ConsistentRead": True},
                {"Select": "COUNT"},
            ):
                log.append(("query", p, extra, query_pages(c, TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues=v, **extra)))
            log.append(("query", p, "begins_with", query_pages(c, TableName="t", KeyConditionExpression="pk = :pk AND begins_with(sk, :p)", ExpressionAttributeValues={**v, ":p": {"S": "D#"}}, Limit=9)))
            log.append(("query", p, "between", query_pages(c, TableName="t", KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b", ExpressionAttributeValues={**v, ":a": {"S": "A#2"}, ":b": {"S": "D#5"}})))
            log.append(("query", p, "filter", query_pages(c, TableName="t", KeyConditionExpression="pk = :pk", FilterExpression="n > :n", ExpressionAttributeValues={**v, ":n": {"N": "25"}}, Limit=11)))
        log.append(("query", "index", query_pages(c, TableName="t", IndexName="by-g", KeyConditionExpression="g = :g", ExpressionAttributeValues={":g": {"S": "G1"}}, Limit=4)))
        log.append(("query", "hash-only", query_pages(c, TableName="h", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "H3"}})))
        log.append(("query", "bad", query_pages(c, TableName="t", KeyConditionExpression="sk = :pk", ExpressionAttributeValues={":pk": {"S": "x"}})))
        log.append(("table", scan_all(c, "t")))
    restore_moto()
    return log


def main():
    seeds = [int(a) for a in sys.argv[1:]] or [1, 2, 3]
    for seed in seeds:
        plain, extended = play(False, seed), play(True, seed)
        assert len(plain) == len(extended)
        for a, b in zip(plain, extended):
            if a != b:
                print(f"bench_dynamodb_equivalence: seed {seed}: moto and the extension differ on\n  {a[:2]}\n  moto:      {a[2:]}\n  extension: {b[2:]}", file=sys.stderr)
                sys.exit(1)
        kinds = {}
        for entry in plain:
            if entry[0] in ("update", "transact"):
                key = f"{entry[0]} {entry[-1][0]}"
            else:
                key = f"{entry[0]} results"
            kinds[key] = kinds.get(key, 0) + 1
        summary = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
        print(
            f"bench_dynamodb_equivalence: seed {seed}: identical ({summary}; "
            f"updates the extension answered itself: {SIMPLE['answered by the extension']})",
            file=sys.stderr,
        )
        SIMPLE["answered by the extension"] = 0


if __name__ == "__main__":
    main()
