"""EC2 listings at a cost closer to AWS's: local-only changes to how moto computes its EC2
answers, never to the answers. Profiled on the sweep benchmark's estate (`dev/bench sweeps`:
10,000 images, 11,100 snapshots), moto spent some 13 s on one DescribeImages of every image and
5 to 7 s on DescribeSnapshots, nearly all of it rendering the response, and 55 ms on each
DescribeImageReferences of 50 images; with this module, 3.5 s, 1 to 1.5 s and 7 ms (time
inside moto, by `dev/bench_moto.py`'s counter). What remains is mostly moto's own walk of the
model, field by field. `dev/bench_ec2_equivalence.py` plays the same requests through moto
with `ec2.py` alone and with this module too, and checks that the responses are identical,
byte for byte, errors included; it also renders every response of its run both ways, and
random bodies as XML both ways. `ec2.install()` installs this module.

**Rendering.** moto renders every field of every resource by asking a chain of six "alias
providers" which attribute names to try (`Image.ImageId`: `ImageId`, `image_id`, `Id`, `id`,
...), then tests the field's path against each of EC2's 20 response transformers: about 60
fields an image, each some 40 Python calls before the value is even read. Which names to try
depends only on the resource's class, the field's model shape (and the structure it sits in) and
its name; which transformer applies, only on the field's path. Here both are worked out by
moto's own code the first time and remembered; every value is still read from the resource, by
the same names in the same order (as moto's `get_value` reads them), and transformed and
rendered by moto as before. A resource that declares its own aliases
(`Meta.serialization_aliases`) goes through moto's code unchanged. Only the EC2 serializer is
affected.

**XML.** moto turns the rendered dict into XML with `xmltodict.unparse` through SAX's
XMLGenerator: some ten calls an element, 40% of the rendering time left. Here the same text is
written directly for what moto's serializer produces (dicts, lists, strings, numbers,
booleans, None; `@` attributes and `#text`), with the same escaping functions (`escape`,
`quoteattr`), the same name checks, and `<a/>` for an element with neither children nor text,
as XMLGenerator writes it with `short_empty_elements`. A body with anything else (comments,
namespace maps, bytes, tuples, several roots, an invalid name) goes to xmltodict, which renders
or refuses it as before; pretty printing (`MOTO_PRETTIFY_RESPONSES`) too.

**Tags.** Every tagged resource rendered looks up its tags with DescribeTags' `resource-id`
filter: moto compiles a regular expression of the id (its cache holds 512, so a listing of
thousands compiles one per resource) and matches it against every tagged resource in the
region. For an id with no wildcard character (`*`, `?`, `[`) that pattern matches that id
only, so here the resource's own tags are read directly, in the same order and form. Other
filters go to moto's DescribeTags.

**Filters.** moto matches each filter value against each resource with `fnmatch`. For values
without a wildcard character (`*`, `?`, `[`) and a resource value that is a string (`image-id`,
`name`, `state`, ...) or, for a single filter value, a list of strings
(`block-device-mapping.snapshot-id`), that is equality, which is tested here directly; every
other case (booleans, dates, numbers, wildcards, several values against a list) goes to moto's
own matching. Filters are applied one after the other to what the previous ones kept, as moto
does, so an unknown filter is refused (or not) as before. Used by moto's image and snapshot
filtering (DescribeImages, DescribeSnapshots, and RunInstances' own lookup of its image).

**DescribeImageReferences** (`ec2.py`) scanned every instance (copying each reservation) and
every launch template once per image asked about. Here each is scanned once per request into
an index by image id, which gives, for each image in the order asked, the same references in
the same order.
"""
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr as _quoteattr

import xmltodict as _xmltodict
from moto.core import serialize as _serialize
from moto.core.serialize import (
    DEFAULT_ALIAS_PROVIDERS,
    AttributePickerContext,
    EC2Serializer,
    XFormedAttributePicker,
)
from moto.core.responses import ActionResult
from moto.ec2 import utils as _ec2_utils
from moto.ec2.models import amis as _amis
from moto.ec2.models import elastic_block_store as _ebs
from moto.ec2.models.tags import TagBackend
from moto.ec2.responses import EC2Response
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

_WILDCARDS = frozenset("*?[")


def _plain(pattern):
    """A filter value `fnmatch` can only match by equality."""
    return isinstance(pattern, str) and _WILDCARDS.isdisjoint(pattern)


# Rendering ---------------------------------------------------------------------------------

_get_value = EC2Serializer.get_value
_MISSING = _serialize.MISSING
# (class, id(shape), id(parent shape), key, field path, id(transformers))
#   -> (names to try, transform or None, what the ids are of)
_plans = {}


def _plan(self, picker, value, key, shape, parent, path, memo):
    """moto's choice, for this field of resources of this class: the names to try (from its
    alias providers) and the transformer (the first whose path the field's path ends with)."""
    context = AttributePickerContext(
        obj=value,
        key=key,
        shape=shape,
        operation_model=self.operation_model,
        service_model=self.operation_model.service_model,
        key_path=".".join(self.path),
    )
    names = tuple((name, "." in name) for name in picker.get_possible_keys(context))
    transformers = picker.response_transformers
    transform = next((t for p, t in transformers.items() if path.endswith(p)), None)
    if len(_plans) > 50_000:
        _plans.clear()  # bounded, should shapes ever be made afresh per response
    # The objects are kept with the plan so that their ids stay theirs.
    plan = _plans[memo] = (names, transform, (shape, parent, transformers))
    return plan


def _get_value_remembered(self, value, key, shape):
    """EC2Serializer.get_value, with moto's choice of names and transformer remembered. Each
    name is read as moto's `get_value` reads it: a dotted name by that function itself, others
    by item (for an object with `__getitem__`) or by attribute, a failure meaning absent."""
    picker = self._value_picker
    if (
        type(picker) is not XFormedAttributePicker
        or picker.alias_providers is not DEFAULT_ALIAS_PROVIDERS
        or hasattr(value, "Meta")
    ):
        return _get_value(self, value, key, shape)
    path = f"{'.'.join(self.path)}.{key}"
    parent = getattr(shape, "parent", None)
    memo = (value.__class__, id(shape), id(parent), key, path, id(picker.response_transformers))
    names, transform, _ = _plans.get(memo) or _plan(self, picker, value, key, shape, parent, path, memo)
    indexable = hasattr(value, "__getitem__")
    found = _MISSING
    for name, dotted in names:
        if dotted:
            found = _serialize.get_value(value, name, _MISSING)
        elif indexable:
            try:
                found = value[name]
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        else:
            found = getattr(value, name, _MISSING)
        if found is not _MISSING:
            break
    else:
        found = None
    return found if transform is None else transform(found)


class _Unusual(Exception):
    """A body outside what `_xml` renders: xmltodict renders it (or refuses it) instead."""


_serialize_body = EC2Serializer._serialize_body
_valid_names = set()


def _checked_name(name):
    if name not in _valid_names:
        if not isinstance(name, str) or name == "#comment":
            raise _Unusual
        try:
            _xmltodict._validate_name(name, "element")
        except ValueError:
            raise _Unusual from None
        _valid_names.add(name)
    return name


def _text(value):
    """xmltodict's `_convert_value_to_string`, for the types moto renders."""
    if isinstance(value, str):
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) in (int, float):
        return str(value)
    raise _Unusual


def _element(out, key, value, depth):
    """xmltodict's `_emit` with XMLGenerator(short_empty_elements=True), not pretty, no
    namespaces or comments: `<key attrs>children text</key>`, or `<key attrs/>` if empty."""
    _checked_name(key)
    if type(value) is list:
        items = value
        if depth == 0 and len(items) > 1:
            raise _Unusual  # several roots: xmltodict refuses
    else:
        items = [value]
    for item in items:
        if item is None:
            item = {}
        elif not isinstance(item, dict):
            item = {"#text": _text(item)}
        cdata, attributes, children = None, [], []
        for child, child_value in item.items():
            if child == "#text":
                cdata = None if child_value is None else _text(child_value)
            elif isinstance(child, str) and child.startswith("@"):
                if child == "@xmlns" and isinstance(child_value, dict):
                    raise _Unusual
                child_value = "" if child_value is None else _text(child_value)
                attributes.append((_checked_name(child[1:]), child_value))
            elif not (isinstance(child_value, list) and not child_value):
                children.append((child, child_value))
        out.append("<" + key)
        for name, attribute in attributes:
            out.append(f" {name}={_quoteattr(attribute)}")
        if children or cdata:
            out.append(">")
            for child, child_value in children:
                _element(out, child, child_value, depth + 1)
            if cdata:
                out.append(_escape(cdata))
            out.append(f"</{key}>")
        else:
            out.append("/>")


def _xml(self, body):
    """EC2Serializer._serialize_body (xmltodict.unparse, full document, short empty elements),
    written directly for the dicts, lists, strings, numbers, booleans and None that moto's
    serializer produces; anything else goes to xmltodict."""
    if self.pretty_print or type(body) is not dict or len(body) != 1:
        return _serialize_body(self, body)
    (root, value), = body.items()
    out = ['<?xml version="1.0" encoding="utf-8"?>\n']
    try:
        _element(out, root, value, 0)
    except (_Unusual, RecursionError):
        return _serialize_body(self, body)
    return "".join(out)


# Tags --------------------------------------------------------------------------------------

_describe_tags = TagBackend.describe_tags


def _describe_tags_of_one(self, filters=None):
    """TagBackend.describe_tags, directly for `{"resource-id": [one plain id]}`."""
    if filters is None or list(filters) != ["resource-id"]:
        return _describe_tags(self, filters)
    ids = filters["resource-id"]
    if not isinstance(ids, list) or len(ids) != 1 or not _plain(ids[0]):
        return _describe_tags(self, filters)
    resource_id = ids[0]
    tags = self.tags.get(resource_id)  # .get: `tags` is a defaultdict
    if not tags:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in tags.items()
    ]


# Filters -----------------------------------------------------------------------------------

_is_filter_matching = _ec2_utils.is_filter_matching


def _matcher(name, filter_value):
    """The test of one filter: by equality where that is what fnmatch does, else moto's."""
    patterns = filter_value if isinstance(filter_value, list) else [filter_value]
    if filter_value is None or not patterns or not all(_plain(p) for p in patterns):
        return lambda obj: _is_filter_matching(obj, name, filter_value)
    wanted = set(patterns)
    single = patterns[0] if isinstance(filter_value, list) and len(filter_value) == 1 else None

    def matches(obj):
        value = obj.get_filter_value(name)
        if isinstance(value, str):
            return value in wanted
        if single is not None and type(value) is list and all(isinstance(v, str) for v in value):
            return single in value
        return _is_filter_matching(obj, name, filter_value)

    return matches


def _generic_filter(filters, objects):
    """moto.ec2.utils.generic_filter, with the matching above."""
    if filters:
        for name, filter_value in filters.items():
            matches = _matcher(name, filter_value)
            objects = [obj for obj in objects if matches(obj)]
    return objects


# DescribeImageReferences -------------------------------------------------------------------


def describe_image_references(self):
    """`ec2.describe_image_references`, with one pass over instances and templates."""
    image_ids = self._get_param("ImageIds", []) or []
    from moto_ext.ec2 import check_reference_ids  # here: ec2 imports this module

    check_reference_ids(image_ids)
    backend = self.ec2_backend
    prefix = f"arn:aws:ec2:{self.region}:{self.current_account}"
    instances, templates = {}, {}
    if image_ids:
        for reservation in backend.all_reservations():
            for instance in reservation.instances:
                if instance.state != "terminated":
                    instances.setdefault(instance.image_id, []).append(instance.id)
        for template in backend.launch_templates.values():
            for image_id in {template.default_version().image_id, template.latest_version().image_id}:
                templates.setdefault(image_id, []).append(template.id)
    references = []
    for image_id in image_ids:
        for instance_id in instances.get(image_id, ()):
            arn = f"{prefix}:instance/{instance_id}"
            references.append({"ImageId": image_id, "ResourceType": "ec2:Instance", "Arn": arn})
        for template_id in templates.get(image_id, ()):
            arn = f"{prefix}:launch-template/{template_id}"
            references.append({"ImageId": image_id, "ResourceType": "ec2:LaunchTemplate", "Arn": arn})
    return ActionResult({"ImageReferences": references})


_PATCHES = [
    (EC2Serializer, "get_value", _get_value_remembered),
    (EC2Serializer, "_serialize_body", _xml),
    (TagBackend, "describe_tags", _describe_tags_of_one),
    (_amis, "generic_filter", _generic_filter),
    (_ebs, "generic_filter", _generic_filter),
    (EC2Response, "describe_image_references", describe_image_references),
]
_replaced = []


def install():
    """Called by `ec2.install()`, after its own changes."""
    if _replaced:
        return
    for owner, name, replacement in _PATCHES:
        _replaced.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)


def uninstall():
    """Puts back what `install()` replaced (for `dev/bench_ec2_equivalence.py`)."""
    while _replaced:
        owner, name, original = _replaced.pop()
        setattr(owner, name, original)
