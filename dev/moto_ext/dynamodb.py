"""DynamoDB transactions at the cost of the items they touch.

moto's TransactWriteItems backs up the whole table once per item of the transaction (a deep
copy each time) so it can roll back a cancelled transaction: the cost grows with table size
times transaction size, and a 10,000-image lineage graph became unusable (4 requests a second,
4 GB of memory). Because the server here handles one request at a time (see `server.py`),
nothing else can change the table during a transaction, so it is enough to save the items the
transaction names and put them back if it is cancelled. moto's own logic is otherwise
unchanged: its whole-table copy is skipped only inside TransactWriteItems.
"""
import copy as _copy

import moto.dynamodb.models as models
from moto.dynamodb.models import DynamoDBBackend
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
    table = backend.tables[table_name]
    if saved is not None:
        table.put_item(saved.to_json()["Attributes"])
        return
    range_value = None
    if table.range_key_attr is not None:
        range_value = DynamoType(key[table.range_key_attr])
    if backend.get_item(table_name, key) is not None:
        table.delete_item(DynamoType(key[table.hash_key_attr]), range_value)


def install():
    global _in_transaction
    original = DynamoDBBackend.transact_write_items
    models.copy = _CopyWithoutTableBackups()

    def transact_write_items(self, transact_items):
        global _in_transaction
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()), None) or {}
            table_name = op.get("TableName")
            if table_name not in self.tables:
                continue
            key = _key_of(self.tables[table_name], op)
            if key:
                saved.append((table_name, key, _copy.deepcopy(self.get_item(table_name, key))))
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
