"""DynamoDB requests at the cost of the items they touch, not of the whole table: three
local-only changes to how moto computes its answers, never to the answers. They were found by
profiling the lineage benchmark (`dev/bench lineage`: 10,000 images recorded through the
recorder's handler), and `dev/bench_dynamodb_equivalence.py` checks each against moto's own
code on the same requests (results, pages and errors identical).

**Transactions.** moto's TransactWriteItems backs up the whole table once per item of the
transaction (a deep copy each time) so it can roll back a cancelled transaction: the cost grows
with table size times transaction size, and a 10,000-image lineage graph became unusable (4
requests a second, 4 GB of memory). Because the server here handles one request at a time (see
`server.py`), nothing else can change the table during a transaction, so it is enough to save
the items the transaction names and put them back if it is cancelled (the saved copies
themselves, as moto's rollback puts back its copy; an action whose key is invalid is left to
moto, which refuses it with its own error). moto's own logic is otherwise unchanged: its
whole-table copy is skipped only inside TransactWriteItems.

**Queries.** moto's Query of a table (no index) lists every item of the table, sorts them all
by key, and only then keeps those of the partition asked for, so every Query costs the whole
table, sorted: profiled while recording 1,000 images, 90% of the Query time went to that
sort, and it grows with the table. moto already stores the items of a table with a sort key by partition
(`table.items[hash_key][range_key]`), so a Query of the table here hands moto's own Query only
that partition's items; moto then sorts, pages, applies the key condition, the filter and the
projection exactly as before. Index queries, scans and tables without a sort key are
untouched.

**Simple updates.** moto validates an update expression with ten passes over its syntax tree,
each looking for clauses below every node, twice for an item that does not exist yet: an
update that SETs seven attributes cost 25 ms of CPU (three: 11 ms; here 0.34 and 0.23 ms), and
recording one CopyImage in a chain 20 deep is some 20 such updates. The expressions the product writes have one simple
form: `SET #a = :v, ...` optionally followed by `ADD #s :set, ...`, top-level attribute names
by placeholder, each once, no condition. For exactly that form, with values that cannot be
invalid (a string, a well-formed number, a boolean; for ADD a non-empty string set without
duplicates, onto an absent attribute or a string set), on attributes that are not keys or
declared in the table's attribute definitions, on a table without a stream, UpdateItem here
does directly what moto's executor does in that case: creates the item from its key if
absent, assigns each SET attribute in order (through moto's size-limited item, so an item
over 400 KB fails as in moto), and appends each new member of an ADDed set. Anything else —
another form, a condition, a missing placeholder, a duplicate or key attribute, any value that
moto might reject — goes to moto's own UpdateItem, unchanged, which validates and answers
(or raises) as before.
"""
import copy as _copy
import inspect as _inspect
import re as _re

import moto.dynamodb.models as models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge, ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_in_transaction = False


class _CopyWithoutTableBackups:
    """Stands in for the `copy` module inside moto.dynamodb.models."""

    def __getattr__(self, name):
        return getattr(_copy, name)

    @staticmethod
    def deepcopy(obj, memo=None):
        if _in_transaction and isinstance(obj, Table):
            return obj
        return _copy.deepcopy(obj, memo)


def _key_of(table, op):
    if "Item" in op:
        key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = op["Item"][table.range_key_attr]
        return key
    return op.get("Key")


def _restore(backend, table_name, key, saved):
    """Puts back the item as it was before the transaction (the saved copy itself: moto's own
    rollback restores its copy too, without validating or streaming anything), or removes it
    if there was none."""
    table = backend.tables[table_name]
    hash_value = DynamoType(key[table.hash_key_attr])
    if table.range_key_attr is None:
        holder, slot = table.items, hash_value
    else:
        holder, slot = table.items[hash_value], DynamoType(key[table.range_key_attr])
    if saved is None:
        holder.pop(slot, None)
    else:
        holder[slot] = saved


_table_query = Table.query
_query_signature = _inspect.signature(_table_query)


def _query_one_partition(self, *args, **kwargs):
    """Table.query, given only the items of the partition asked for (see the module doc)."""
    arguments = _query_signature.bind(self, *args, **kwargs).arguments
    hash_key = arguments.get("hash_key")
    if arguments.get("index_name") or hash_key is None or not self.has_range_key:
        return _table_query(self, *args, **kwargs)
    partition = self.items.get(hash_key)
    items = list(partition.values()) if partition else []
    # moto's Query reads the table through `all_items()`; for this call that is the
    # partition. One request at a time (server.py), so no other request sees the stand-in.
    self.all_items = lambda: items
    try:
        return _table_query(self, *args, **kwargs)
    finally:
        del self.all_items


_NAME = r"#[A-Za-z0-9_]+"
_VALUE = r":[A-Za-z0-9_]+"
_SET_ACTION = _re.compile(rf"\s*({_NAME})\s*=\s*({_VALUE})\s*")
_ADD_ACTION = _re.compile(rf"\s*({_NAME})\s+({_VALUE})\s*")
_SIMPLE_UPDATE = _re.compile(
    rf"\s*SET\s+(?P<set>{_NAME}\s*=\s*{_VALUE}(?:\s*,\s*{_NAME}\s*=\s*{_VALUE})*)"
    rf"(?:\s+ADD\s+(?P<add>{_NAME}\s+{_VALUE}(?:\s*,\s*{_NAME}\s+{_VALUE})*))?\s*"
)
_NUMBER = _re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")
_update_item = DynamoDBBackend.update_item


def _plain_value(value):
    """A SET value no validator of moto's can reject: a string, a number, a boolean."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (kind, raw), = value.items()
    if kind == "S":
        return isinstance(raw, str) and raw != ""
    if kind == "N":
        return isinstance(raw, str) and _NUMBER.fullmatch(raw) is not None
    if kind == "BOOL":
        return isinstance(raw, bool)
    return False


def _plain_string_set(value):
    if not isinstance(value, dict) or list(value) != ["SS"]:
        return False
    members = value["SS"]
    return (
        isinstance(members, list)
        and len(members) > 0
        and all(isinstance(m, str) for m in members)
        and len(set(members)) == len(members)
    )


def _simple_plan(table, key, update_expression, names, values):
    """`(sets, adds)` as `[(attribute, value)]` when the update has the simple form (see the
    module doc), else None."""
    if not isinstance(update_expression, str) or table.stream_shard is not None:
        return None
    if not table.has_range_key or not isinstance(key, dict):
        return None
    if set(key) != {table.hash_key_attr, table.range_key_attr}:
        return None
    match = _SIMPLE_UPDATE.fullmatch(update_expression)
    if match is None:
        return None
    names, values = names or {}, values or {}
    protected = set(table.attribute_keys) | {a["AttributeName"] for a in table.attr}
    protected |= {table.hash_key_attr, table.range_key_attr}
    seen = set()

    def resolve(pairs):
        out = []
        for name_ph, value_ph in pairs:
            name = names.get(name_ph)
            if not isinstance(name, str) or name in protected or name in seen or value_ph not in values:
                return None
            seen.add(name)
            out.append((name, values[value_ph]))
        return out

    sets = resolve(_SET_ACTION.fullmatch(a).groups() for a in match.group("set").split(","))
    if sets is None or not all(_plain_value(v) for _, v in sets):
        return None
    adds = []
    if match.group("add"):
        adds = resolve(_ADD_ACTION.fullmatch(a).groups() for a in match.group("add").split(","))
        if adds is None or not all(_plain_string_set(v) for _, v in adds):
            return None
    return sets, adds


def _update_item_simply(
    self,
    table_name,
    key,
    update_expression,
    expression_attribute_names,
    expression_attribute_values,
    attribute_updates=None,
    expected=None,
    condition_expression=None,
    return_values_on_condition_check_failure=None,
):
    """DynamoDBBackend.update_item, done directly for the simple form (see the module doc)."""
    table = self.get_table(table_name)
    plan = None
    if not attribute_updates and not expected and not condition_expression:
        plan = _simple_plan(table, key, update_expression, expression_attribute_names, expression_attribute_values)
    if plan is None:
        return _update_item(
            self,
            table_name,
            key,
            update_expression,
            expression_attribute_names,
            expression_attribute_values,
            attribute_updates=attribute_updates,
            expected=expected,
            condition_expression=condition_expression,
            return_values_on_condition_check_failure=return_values_on_condition_check_failure,
        )
    sets, adds = plan
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr])
    item = table.get_item(hash_value, range_value)
    if item is not None and any(a in item.attrs and item.attrs[a].type != "SS" for a, _ in adds):
        # ADD onto an attribute of another type: moto's answer (an error).
        return _update_item(self, table_name, key, update_expression, expression_attribute_names, expression_attribute_values)
    if item is None:
        table.put_item({table.hash_key_attr: key[table.hash_key_attr], table.range_key_attr: key[table.range_key_attr]})
        item = table.get_item(hash_value, range_value)
    try:
        for name, value in sets:
            item.attrs[name] = DynamoType(value)
        for name, value in adds:
            if name not in item.attrs:
                item.attrs[name] = DynamoType({"SS": []})
            current = item.attrs[name].value
            for member in value["SS"]:
                if member not in current:
                    current.append(member)
    except ItemSizeTooLarge:
        raise ItemSizeToUpdateTooLarge()
    return item


def install():
    global _in_transaction
    original = DynamoDBBackend.transact_write_items
    models.copy = _CopyWithoutTableBackups()
    Table.query = _query_one_partition
    DynamoDBBackend.update_item = _update_item_simply

    def transact_write_items(self, transact_items):
        global _in_transaction
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()), None) or {}
            table_name = op.get("TableName")
            if table_name not in self.tables:
                continue
            key = _key_of(self.tables[table_name], op)
            if not key:
                continue
            try:
                current = self.get_item(table_name, key)
            except Exception:
                # Not a valid key: moto refuses that action with its own error, writing nothing.
                continue
            saved.append((table_name, key, _copy.deepcopy(current)))
        _in_transaction = True
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, item in reversed(saved):
                _restore(self, table_name, key, item)
            raise
        finally:
            _in_transaction = False

    DynamoDBBackend.transact_write_items = transact_write_items
