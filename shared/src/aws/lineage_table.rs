//! [`LineageStore`] over one DynamoDB table (`pk`, `sk`, both strings).
//!
//! Items, all in the partition of the image they are about (`pk = IMG#<region>#<ami>`):
//!
//! | `sk` | item |
//! |---|---|
//! | `NODE` | the image: name, account, origin, parent, snapshots, state flags |
//! | `D#<region>#<ami>` | a descendant at any depth, with its parent, name and state flags |
//! | `A#<region>#<ami>` | an ancestor at any depth |
//! | `CONFLICT#<source>#<region>#<ami>` | a source naming another parent than the recorded one |
//!
//! plus `pk = EVT#<eventID>`, `sk = EVENT`: the record that an event was applied, which makes
//! every write conditional and idempotent on the CloudTrail eventID.
//!
//! So "all descendants of X" is one paginated Query of X's partition, and "all ancestors" one
//! Query plus one BatchGetItem for their nodes. Every attribute is set by exactly one kind of
//! event and flags are only ever set, so writes commute: any delivery order converges on the
//! same items. After writing an edge or a state change the adapter re-reads what it based the
//! write on and writes again until that stops changing, so concurrent writers converge too.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ids::{AccountId, ImageId, ImageRef, Region, SnapshotId};
use crate::lineage::{
    closure_entries, sort_relatives, ConflictingParent, EdgeSource, Enablement, EnablementChange,
    LineageNode, LineageStore, Link, NodeFacts, NodeState, Origin, Parent, Relative, StateChange,
    StateFlag, StoreError, WriteOutcome,
};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// DynamoDB allows at most 100 actions per transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Re-read passes before giving up on a write that keeps changing under us.
const MAX_SETTLE_PASSES: u32 = 8;

pub(crate) const NODE_SK: &str = "NODE";
const EVENT_SK: &str = "EVENT";
const DESCENDANT_PREFIX: &str = "D#";
pub(crate) const ANCESTOR_PREFIX: &str = "A#";
const CONFLICT_PREFIX: &str = "CONFLICT#";

/// The lineage table.
#[derive(Clone)]
pub struct LineageTable {
    client: Client,
    table: String,
    /// Items per Query page; `None` lets DynamoDB fill 1 MB pages.
    page_size: Option<i32>,
}

/// The partitions the lineage lives in: an image's (`IMG#<region>#<id>`: its node, relatives
/// and conflicts) and a recorded event's (`EVT#<eventID>`). The recorder's IAM grant names them.
pub const PARTITION_PREFIXES: [&str; 2] = ["IMG#", "EVT#"];

pub(crate) fn image_pk(image: &ImageRef) -> String {
    format!("{}{}#{}", PARTITION_PREFIXES[0], image.region, image.image_id)
}

fn member_sk(prefix: &str, image: &ImageRef) -> String {
    format!("{prefix}{}#{}", image.region, image.image_id)
}

fn event_pk(event_id: &str) -> String {
    format!("{}{event_id}", PARTITION_PREFIXES[1])
}

pub(crate) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        ("pk".into(), AttributeValue::S(pk)),
        ("sk".into(), AttributeValue::S(sk.into())),
    ])
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(crate) fn flag(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn flags(item: &Item) -> Vec<StateFlag> {
    StateFlag::ALL.into_iter().filter(|f| flag(item, f.attribute())).collect()
}

pub(crate) fn image_at(item: &Item, id_attr: &str, region_attr: &str) -> Option<ImageRef> {
    Some(ImageRef::new(
        Region::parse(text(item, region_attr)?)?,
        ImageId::parse(text(item, id_attr)?)?,
    ))
}

/// An update of one item: `SET` and `ADD` clauses with generated placeholders.
struct UpdateSpec {
    key: Item,
    /// `(attribute, value, only if absent)`.
    set: Vec<(&'static str, AttributeValue, bool)>,
    add: Vec<(&'static str, AttributeValue)>,
}

impl UpdateSpec {
    fn new(pk: String, sk: &str) -> Self {
        Self { key: key(pk, sk), set: Vec::new(), add: Vec::new() }
    }

    fn set(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.set.push((name, value, false));
        self
    }

    /// Sets the attribute unless the item has it already (`if_not_exists`).
    fn set_if_absent(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.set.push((name, value, true));
        self
    }

    /// `set`, or `set_if_absent` when `authoritative` is false.
    fn set_with(self, authoritative: bool, name: &'static str, value: Option<&str>) -> Self {
        match (value, authoritative) {
            (None, _) => self,
            (Some(v), true) => self.set(name, s(v)),
            (Some(v), false) => self.set_if_absent(name, s(v)),
        }
    }

    fn add_strings(mut self, name: &'static str, values: Vec<String>) -> Self {
        if !values.is_empty() {
            self.add.push((name, AttributeValue::Ss(values)));
        }
        self
    }

    fn set_opt(self, name: &'static str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.set(name, s(v)),
            None => self,
        }
    }

    fn set_flags(mut self, flags: &[StateFlag]) -> Self {
        for f in flags {
            self.set.push((f.attribute(), AttributeValue::Bool(true), false));
        }
        self
    }

    fn add_snapshots(mut self, snapshots: &[SnapshotId]) -> Self {
        if !snapshots.is_empty() {
            let ids = snapshots.iter().map(|s| s.to_string()).collect();
            self.add.push(("snapshot_ids", AttributeValue::Ss(ids)));
        }
        self
    }

    fn into_action(self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut clauses = Vec::new();
        let mut placeholder = |name: &str, value: AttributeValue| {
            let i = names.len();
            names.insert(format!("#a{i}"), name.to_owned());
            values.insert(format!(":v{i}"), value);
            (format!("#a{i}"), format!(":v{i}"))
        };
        let sets: Vec<String> = self
            .set
            .into_iter()
            .map(|(n, v, only_if_absent)| {
                let (a, v) = placeholder(n, v);
                if only_if_absent {
                    format!("{a} = if_not_exists({a}, {v})")
                } else {
                    format!("{a} = {v}")
                }
            })
            .collect();
        if !sets.is_empty() {
            clauses.push(format!("SET {}", sets.join(", ")));
        }
        let adds: Vec<String> = self
            .add
            .into_iter()
            .map(|(n, v)| {
                let (a, v) = placeholder(n, v);
                format!("{a} {v}")
            })
            .collect();
        if !adds.is_empty() {
            clauses.push(format!("ADD {}", adds.join(", ")));
        }
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(self.key))
            .update_expression(clauses.join(" "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| StoreError::Aws {
                table: table.into(),
                operation: "build update",
                message: e.to_string(),
            })?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// What the child's partition says when an edge is recorded.
#[derive(Clone, Debug, PartialEq)]
struct ChildView {
    flags: Vec<StateFlag>,
    /// The parent the child's node records, if any.
    parent: Option<ImageRef>,
    /// Descendant → (depth, the item's attributes to copy).
    descendants: BTreeMap<ImageRef, (u32, DescendantAttrs)>,
    ancestors: Vec<Link>,
}

/// The attributes of a descendant entry that are copied up to new ancestors.
#[derive(Clone, Debug, PartialEq)]
struct DescendantAttrs {
    parent: Option<ImageRef>,
    name: Option<String>,
    account: Option<String>,
    flags: Vec<StateFlag>,
}

impl LineageTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), page_size: None }
    }

    /// Caps Query pages at `items` (tests use it to exercise pagination on small graphs).
    pub fn with_page_size(mut self, items: i32) -> Self {
        self.page_size = Some(items.max(1));
        self
    }

    /// The table, reached through the process's shared clients.
    pub fn from_clients(clients: &super::Clients, table: impl Into<String>) -> Self {
        Self::new(clients.dynamodb().clone(), table)
    }

    /// The underlying client (for table dumps in tests and tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The items of `keys` that exist: BatchGetItem, 100 keys a request,
    /// [`super::DYNAMODB_BATCHES`] requests at once, strongly consistent, unprocessed keys
    /// retried.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        let found: Vec<Vec<Item>> = futures_util::stream::iter(
            keys.chunks(100).map(|chunk| self.get_chunk(chunk.to_vec())),
        )
        .buffered(super::DYNAMODB_BATCHES)
        .try_collect()
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One BatchGetItem of at most 100 `keys`, its unprocessed keys asked again.
    async fn get_chunk(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| self.aws_error("BatchGetItem", e))?,
        );
        let mut rounds = 0;
        while let Some(request) = pending.take() {
            rounds += 1;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| self.aws_error("BatchGetItem", e))?;
            found.extend(out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default());
            pending = out
                .unprocessed_keys
                .unwrap_or_default()
                .remove(&self.table)
                .filter(|k| !k.keys().is_empty());
            if pending.is_some() && rounds >= super::MAX_ATTEMPTS * 2 {
                return Err(StoreError::Aws {
                    table: self.table.clone(),
                    operation: "BatchGetItem",
                    message: "keys still unprocessed after retries (throttled)".into(),
                });
            }
            if pending.is_some() {
                tokio::time::sleep(std::time::Duration::from_millis(50 << rounds.min(5))).await;
            }
        }
        Ok(found)
    }

    pub(crate) fn store_error(
        &self,
        operation: &'static str,
        err: impl std::error::Error,
    ) -> StoreError {
        self.aws_error(operation, err)
    }

    fn aws_error(&self, operation: &'static str, err: impl std::error::Error) -> StoreError {
        StoreError::Aws { table: self.table.clone(), operation, message: super::describe(&err) }
    }

    /// All items of a partition whose `sk` starts with `prefix`, every page, strongly
    /// consistent.
    pub(crate) async fn query(
        &self,
        pk: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(pk))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take());
            request = match prefix {
                Some(p) => request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(p)),
                None => request.key_condition_expression("pk = :pk"),
            };
            let page = request.send().await.map_err(|e| self.aws_error("Query", e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    async fn event_seen(&self, event_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(event_pk(event_id), EVENT_SK)))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| self.aws_error("GetItem", e))?;
        Ok(out.item.is_some())
    }

    fn links(&self, items: &[Item], prefix: &str) -> Result<Vec<Link>, StoreError> {
        items
            .iter()
            .filter(|i| text(i, "sk").is_some_and(|sk| sk.starts_with(prefix)))
            .map(|i| {
                let image = image_at(i, "image_id", "region");
                let depth = i.get("depth").and_then(|d| d.as_n().ok()).and_then(|d| d.parse().ok());
                match (image, depth) {
                    (Some(image), Some(depth)) => Ok(Link { image, depth }),
                    _ => Err(self.corrupt(i, "closure entry without image_id/region/depth")),
                }
            })
            .collect()
    }

    fn corrupt(&self, item: &Item, message: &str) -> StoreError {
        let key =
            format!("{}/{}", text(item, "pk").unwrap_or("?"), text(item, "sk").unwrap_or("?"));
        StoreError::Corrupt { table: self.table.clone(), key, message: message.into() }
    }

    async fn ancestors_of(&self, image: &ImageRef) -> Result<Vec<Link>, StoreError> {
        let items = self.query(&image_pk(image), Some(ANCESTOR_PREFIX)).await?;
        self.links(&items, ANCESTOR_PREFIX)
    }

    async fn child_view(&self, child: &ImageRef) -> Result<ChildView, StoreError> {
        let items = self.query(&image_pk(child), None).await?;
        let mut view = ChildView {
            flags: Vec::new(),
            parent: None,
            descendants: BTreeMap::new(),
            ancestors: self.links(&items, ANCESTOR_PREFIX)?,
        };
        for item in &items {
            match text(item, "sk") {
                Some(NODE_SK) => {
                    view.flags = flags(item);
                    view.parent = image_at(item, "parent_image_id", "parent_region");
                }
                Some(sk) if sk.starts_with(DESCENDANT_PREFIX) => {
                    // A state flag can land before its closure entry (a partial write being
                    // redone); such an entry has no depth yet and links nothing.
                    let Ok(link) = self.links(std::slice::from_ref(item), DESCENDANT_PREFIX) else {
                        continue;
                    };
                    let Some(Link { image, depth }) = link.into_iter().next() else { continue };
                    let attrs = DescendantAttrs {
                        parent: image_at(item, "parent_image_id", "parent_region"),
                        name: text(item, "name").map(str::to_owned),
                        account: text(item, "account").map(str::to_owned),
                        flags: flags(item),
                    };
                    view.descendants.insert(image, (depth, attrs));
                }
                _ => {}
            }
        }
        Ok(view)
    }

    /// Runs actions in transactions of at most 100. The event marker, when given, goes in the
    /// last one with its condition, so a redelivery after a partial failure redoes the work.
    /// Returns `Duplicate` when the marker's condition failed.
    async fn transact(
        &self,
        mut actions: Vec<TransactWriteItem>,
        marker: Option<TransactWriteItem>,
    ) -> Result<WriteOutcome, StoreError> {
        let marker_present = marker.is_some();
        actions.extend(marker);
        let mut outcome = WriteOutcome::Recorded;
        let mut chunks: Vec<Vec<TransactWriteItem>> = Vec::new();
        let mut rest = actions;
        while !rest.is_empty() {
            let take = rest.len().min(MAX_TRANSACTION_ITEMS);
            let tail = rest.split_off(take);
            chunks.push(rest);
            rest = tail;
        }
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            let marker_index = (marker_present && i == last).then(|| chunk.len() - 1);
            let result =
                self.client.transact_write_items().set_transact_items(Some(chunk)).send().await;
            if let Err(err) = result {
                if let (Some(index), SdkError::ServiceError(service)) = (marker_index, &err) {
                    if let TransactWriteItemsError::TransactionCanceledException(cancel) =
                        service.err()
                    {
                        let marker_failed =
                            cancel.cancellation_reasons().get(index).and_then(|r| r.code())
                                == Some("ConditionalCheckFailed");
                        if marker_failed {
                            outcome = WriteOutcome::Duplicate;
                            continue;
                        }
                    }
                }
                return Err(self.aws_error("TransactWriteItems", err));
            }
        }
        Ok(outcome)
    }

    fn marker(
        &self,
        event_id: &str,
        attributes: Vec<(&'static str, Option<String>)>,
    ) -> TransactWriteItem {
        let mut item = key(event_pk(event_id), EVENT_SK);
        for (name, value) in attributes {
            if let Some(v) = value {
                item.insert(name.into(), s(v));
            }
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .expect("table, item and condition are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// The closure updates for edge `child → parent`: a `D#` entry in every upper partition
    /// and an `A#` entry in every lower one.
    fn closure_actions(
        &self,
        facts: &NodeFacts,
        parent: &ImageRef,
        parent_ancestors: &[Link],
        child: &ChildView,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let lowers: Vec<Link> = child
            .descendants
            .iter()
            .map(|(image, (depth, _))| Link { image: image.clone(), depth: *depth })
            .collect();
        let own = DescendantAttrs {
            parent: Some(parent.clone()),
            name: facts.name.clone(),
            account: facts.account.as_ref().map(|a| a.to_string()),
            flags: child.flags.clone(),
        };
        let mut actions = Vec::new();
        for entry in closure_entries(parent, parent_ancestors, &facts.image, &lowers) {
            let attrs = if entry.descendant == facts.image {
                &own
            } else {
                match child.descendants.get(&entry.descendant) {
                    Some((_, attrs)) => attrs,
                    None => continue,
                }
            };
            let down = UpdateSpec::new(
                image_pk(&entry.ancestor),
                &member_sk(DESCENDANT_PREFIX, &entry.descendant),
            )
            .set("image_id", s(entry.descendant.image_id.as_str()))
            .set("region", s(entry.descendant.region.as_str()))
            .set("depth", AttributeValue::N(entry.depth.to_string()))
            .set_opt("parent_image_id", attrs.parent.as_ref().map(|p| p.image_id.as_str()))
            .set_opt("parent_region", attrs.parent.as_ref().map(|p| p.region.as_str()))
            .set_opt("name", attrs.name.as_deref())
            .set_opt("account", attrs.account.as_deref())
            .set_flags(&attrs.flags);
            let up = UpdateSpec::new(
                image_pk(&entry.descendant),
                &member_sk(ANCESTOR_PREFIX, &entry.ancestor),
            )
            .set("image_id", s(entry.ancestor.image_id.as_str()))
            .set("region", s(entry.ancestor.region.as_str()))
            .set("depth", AttributeValue::N(entry.depth.to_string()));
            actions.push(down.into_action(&self.table)?);
            actions.push(up.into_action(&self.table)?);
        }
        Ok(actions)
    }

    /// The node's own item. A creating event sets its attributes; facts from the backfill's
    /// other sources only fill those no event has set.
    fn node_action(&self, facts: &NodeFacts) -> Result<TransactWriteItem, StoreError> {
        let (parent, note) = match &facts.parent {
            Parent::Image(p) => (Some(p), None),
            Parent::None => (None, None),
            Parent::Unknown(why) => (None, Some(why.as_str())),
        };
        let event = facts.from_event();
        let created_at = facts.created_at.map(|t| t.to_rfc3339());
        let mut node = UpdateSpec::new(image_pk(&facts.image), NODE_SK)
            .set("image_id", s(facts.image.image_id.as_str()))
            .set("region", s(facts.image.region.as_str()))
            .set_with(event, "origin", facts.origin.map(Origin::as_str))
            .set_with(event, "created_at", created_at.as_deref())
            .set_with(event, "account", facts.account.as_ref().map(AccountId::as_str))
            .set_with(event, "name", facts.name.as_deref())
            .set_with(event, "actor_arn", facts.actor_arn.as_deref())
            .set_opt("parent_image_id", parent.map(|p| p.image_id.as_str()))
            .set_opt("parent_region", parent.map(|p| p.region.as_str()))
            .set_with(event, "parent_note", note)
            .add_snapshots(&facts.snapshots);
        if event {
            node = node.set("created_event", s(facts.event_id.as_str()));
        }
        if parent.is_some() {
            node = node.add_strings(
                "parent_sources",
                facts.sources.iter().map(|s| s.as_str().to_owned()).collect(),
            );
        }
        node.into_action(&self.table)
    }

    /// Records that `facts` name another parent than the recorded one (with the marker, so a
    /// redelivery does not record it twice).
    async fn record_conflict(
        &self,
        facts: &NodeFacts,
        recorded: &ImageRef,
        claimed: &ImageRef,
        marker: TransactWriteItem,
    ) -> Result<StoreError, StoreError> {
        let names: Vec<&str> = facts.sources.iter().map(|s| s.as_str()).collect();
        let source_names = names.join(", ");
        let mut item = key(
            image_pk(&facts.image),
            &format!(
                "{CONFLICT_PREFIX}{}#{}#{}",
                names.join("+"),
                claimed.region,
                claimed.image_id
            ),
        );
        for (name, value) in [
            ("image_id", facts.image.image_id.as_str()),
            ("region", facts.image.region.as_str()),
            ("claimed_image_id", claimed.image_id.as_str()),
            ("claimed_region", claimed.region.as_str()),
            ("recorded_image_id", recorded.image_id.as_str()),
            ("recorded_region", recorded.region.as_str()),
            ("sources", source_names.as_str()),
            ("claim_key", facts.event_id.as_str()),
        ] {
            item.insert(name.into(), s(value));
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| self.aws_error("build put", e))?;
        self.transact(vec![TransactWriteItem::builder().put(put).build()], Some(marker)).await?;
        Ok(StoreError::Conflict(Box::new(ConflictingParent {
            image: facts.image.clone(),
            recorded: recorded.clone(),
            claimed: claimed.clone(),
            source_names,
        })))
    }

    /// The conflicts recorded for an image: `(sources, claimed parent, recorded parent)`.
    pub async fn conflicts(
        &self,
        image: &ImageRef,
    ) -> Result<Vec<(String, ImageRef, ImageRef)>, StoreError> {
        let items = self.query(&image_pk(image), Some(CONFLICT_PREFIX)).await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                Some((
                    text(i, "sources")?.to_owned(),
                    image_at(i, "claimed_image_id", "claimed_region")?,
                    image_at(i, "recorded_image_id", "recorded_region")?,
                ))
            })
            .collect())
    }

    fn state_actions(
        &self,
        change: &StateChange,
        ancestors: &[Link],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        ancestors
            .iter()
            .map(|a| {
                UpdateSpec::new(image_pk(&a.image), &member_sk(DESCENDANT_PREFIX, &change.image))
                    .set_flags(&[change.flag])
                    .into_action(&self.table)
            })
            .collect()
    }

    fn node_from_item(&self, image: &ImageRef, item: &Item) -> LineageNode {
        let known = item.contains_key("created_at");
        LineageNode {
            image: image.clone(),
            account: text(item, "account").and_then(AccountId::parse),
            name: text(item, "name").map(str::to_owned),
            created_at: text(item, "created_at")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            origin: text(item, "origin").and_then(Origin::parse),
            parent: image_at(item, "parent_image_id", "parent_region"),
            parent_note: text(item, "parent_note").map(str::to_owned),
            state: NodeState::from_flags(known, &flags(item))
                .with_enablement(enablement(item).as_ref()),
            enablement: enablement(item),
            snapshot_return_codes: string_map(item, "snapshot_return_codes"),
            snapshots: {
                let mut v: Vec<SnapshotId> = item
                    .get("snapshot_ids")
                    .and_then(|v| v.as_ss().ok())
                    .map(|ids| ids.iter().filter_map(|i| SnapshotId::parse(i)).collect())
                    .unwrap_or_default();
                v.sort();
                v
            },
            snapshots_deleted_by_aws: flag(item, "snapshots_deleted_by_aws"),
            created_event_id: text(item, "created_event").map(str::to_owned),
            created_by: text(item, "actor_arn").map(str::to_owned),
            parent_sources: {
                let mut v: Vec<EdgeSource> = item
                    .get("parent_sources")
                    .and_then(|v| v.as_ss().ok())
                    .map(|names| names.iter().filter_map(|n| EdgeSource::parse(n)).collect())
                    .unwrap_or_default();
                v.sort();
                v
            },
            snapshot_fates: string_map(item, "snapshot_fate"),
        }
    }

    /// Sets the node's enablement unless a newer one is recorded (an older change delivered
    /// late loses). The time is written at a fixed precision so that the condition's string
    /// comparison orders it.
    async fn set_enablement(&self, change: &EnablementChange) -> Result<(), StoreError> {
        let at = change.at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(image_pk(&change.image), NODE_SK)))
            .update_expression(
                "SET image_id = :id, #r = :region, is_disabled = :d, enablement_at = :at, enablement_event = :by",
            )
            .condition_expression("attribute_not_exists(enablement_at) OR enablement_at < :at")
            .expression_attribute_names("#r", "region")
            .expression_attribute_values(":id", s(change.image.image_id.as_str()))
            .expression_attribute_values(":region", s(change.image.region.as_str()))
            .expression_attribute_values(":d", AttributeValue::Bool(change.disabled))
            .expression_attribute_values(":at", s(at))
            .expression_attribute_values(":by", s(change.event_name.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.aws_error("UpdateItem", e)),
        }
    }
}

/// A map of strings (`snapshot_fate`, `snapshot_return_codes`), empty when absent.
fn string_map(item: &Item, name: &str) -> BTreeMap<String, String> {
    item.get(name)
        .and_then(|v| v.as_m().ok())
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect())
        .unwrap_or_default()
}

/// The node's latest disable or enable, when one is recorded.
fn enablement(item: &Item) -> Option<Enablement> {
    let at = DateTime::parse_from_rfc3339(text(item, "enablement_at")?).ok()?;
    Some(Enablement {
        disabled: flag(item, "is_disabled"),
        at: at.with_timezone(&Utc),
        by_event: text(item, "enablement_event").unwrap_or("?").to_owned(),
    })
}

impl LineageStore for LineageTable {
    async fn record_node(&self, facts: &NodeFacts) -> Result<WriteOutcome, StoreError> {
        if self.event_seen(&facts.event_id).await? {
            return Ok(WriteOutcome::Duplicate);
        }
        let marker = self.marker(
            &facts.event_id,
            vec![
                ("event_name", Some(facts.origin.map_or("Backfill", Origin::as_str).to_owned())),
                ("event_time", facts.created_at.map(|t| t.to_rfc3339())),
                ("image_id", Some(facts.image.image_id.to_string())),
                ("region", Some(facts.image.region.to_string())),
                ("actor_arn", facts.actor_arn.clone()),
            ],
        );
        let node = self.node_action(facts)?;
        let Parent::Image(parent) = &facts.parent else {
            return self.transact(vec![node], Some(marker)).await;
        };
        if parent == &facts.image {
            return Err(StoreError::Cycle { image: facts.image.clone(), parent: parent.clone() });
        }
        let mut parent_ancestors = self.ancestors_of(parent).await?;
        let mut child = self.child_view(&facts.image).await?;
        if let Some(recorded) = child.parent.as_ref().filter(|p| *p != parent) {
            return Err(self.record_conflict(facts, recorded, parent, marker).await?);
        }
        let check_cycle = |ancestors: &[Link], child: &ChildView| {
            let cyclic = ancestors.iter().any(|l| l.image == facts.image)
                || child.descendants.contains_key(parent);
            if cyclic {
                Err(StoreError::Cycle { image: facts.image.clone(), parent: parent.clone() })
            } else {
                Ok(())
            }
        };
        check_cycle(&parent_ancestors, &child)?;
        let mut actions = vec![node];
        actions.extend(self.closure_actions(facts, parent, &parent_ancestors, &child)?);
        let outcome = self.transact(actions, Some(marker)).await?;
        // Settle: if what the write was based on changed meanwhile (a concurrent writer
        // linked the parent upwards or the child downwards, or changed a state), write the
        // closure again from the new view. Writes are idempotent, so extra passes are safe.
        for _ in 0..MAX_SETTLE_PASSES {
            let ancestors_now = self.ancestors_of(parent).await?;
            let child_now = self.child_view(&facts.image).await?;
            let mut sorted_before = parent_ancestors.clone();
            sorted_before.sort();
            let mut sorted_now = ancestors_now.clone();
            sorted_now.sort();
            let child_same =
                child_now.flags == child.flags && child_now.descendants == child.descendants;
            if sorted_before == sorted_now && child_same {
                return Ok(outcome);
            }
            check_cycle(&ancestors_now, &child_now)?;
            let actions = self.closure_actions(facts, parent, &ancestors_now, &child_now)?;
            self.transact(actions, None).await?;
            parent_ancestors = ancestors_now;
            child = child_now;
        }
        Err(StoreError::Unsettled { image: facts.image.clone(), attempts: MAX_SETTLE_PASSES })
    }

    async fn record_state(&self, change: &StateChange) -> Result<WriteOutcome, StoreError> {
        if self.event_seen(&change.event_id).await? {
            return Ok(WriteOutcome::Duplicate);
        }
        let marker = self.marker(
            &change.event_id,
            vec![
                ("event_name", Some(change.event_name.clone())),
                ("event_time", Some(change.at.to_rfc3339())),
                ("image_id", Some(change.image.image_id.to_string())),
                ("region", Some(change.image.region.to_string())),
                ("actor_arn", change.actor_arn.clone()),
            ],
        );
        let mut node = UpdateSpec::new(image_pk(&change.image), NODE_SK)
            .set("image_id", s(change.image.image_id.as_str()))
            .set("region", s(change.image.region.as_str()))
            .set_flags(&[change.flag])
            .add_snapshots(&change.snapshots);
        if change.event_name == "DeregisterImage" {
            node = node
                .set("deregistered_at", s(change.at.to_rfc3339()))
                .set("deregister_event", s(change.event_id.as_str()))
                .set_opt("deregistered_by", change.actor_arn.as_deref());
        }
        if change.snapshots_deleted_by_aws {
            node = node.set("snapshots_deleted_by_aws", AttributeValue::Bool(true));
        }
        if !change.snapshot_results.is_empty() {
            let codes = change
                .snapshot_results
                .iter()
                .map(|r| (r.snapshot.to_string(), s(r.code.as_str())))
                .collect();
            node = node.set("snapshot_return_codes", AttributeValue::M(codes));
        }
        let mut ancestors = self.ancestors_of(&change.image).await?;
        let mut actions = vec![node.into_action(&self.table)?];
        actions.extend(self.state_actions(change, &ancestors)?);
        let outcome = self.transact(actions, Some(marker)).await?;
        for _ in 0..MAX_SETTLE_PASSES {
            let now = self.ancestors_of(&change.image).await?;
            let new: Vec<Link> = now.iter().filter(|l| !ancestors.contains(l)).cloned().collect();
            if new.is_empty() {
                return Ok(outcome);
            }
            self.transact(self.state_actions(change, &new)?, None).await?;
            ancestors = now;
        }
        Err(StoreError::Unsettled { image: change.image.clone(), attempts: MAX_SETTLE_PASSES })
    }

    async fn record_enablement(
        &self,
        change: &EnablementChange,
    ) -> Result<WriteOutcome, StoreError> {
        if self.event_seen(&change.event_id).await? {
            return Ok(WriteOutcome::Duplicate);
        }
        self.set_enablement(change).await?;
        let marker = self.marker(
            &change.event_id,
            vec![
                ("event_name", Some(change.event_name.clone())),
                ("event_time", Some(change.at.to_rfc3339())),
                ("image_id", Some(change.image.image_id.to_string())),
                ("region", Some(change.image.region.to_string())),
                ("actor_arn", change.actor_arn.clone()),
            ],
        );
        self.transact(Vec::new(), Some(marker)).await
    }

    async fn node(&self, image: &ImageRef) -> Result<Option<LineageNode>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(image_pk(image), NODE_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.aws_error("GetItem", e))?;
        if let Some(item) = out.item {
            return Ok(Some(self.node_from_item(image, &item)));
        }
        // Known only as somebody's relative?
        let any = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(image_pk(image)))
            .limit(1)
            .send()
            .await
            .map_err(|e| self.aws_error("Query", e))?;
        Ok((any.count > 0).then(|| LineageNode::unknown(image.clone())))
    }

    async fn nodes(
        &self,
        images: &[ImageRef],
    ) -> Result<HashMap<ImageRef, LineageNode>, StoreError> {
        let keys = images.iter().map(|i| key(image_pk(i), NODE_SK)).collect();
        let mut found = HashMap::new();
        for item in self.batch_get(keys).await? {
            if let Some(image) = image_at(&item, "image_id", "region") {
                let node = self.node_from_item(&image, &item);
                found.insert(image, node);
            }
        }
        Ok(found)
    }

    async fn descendants(&self, image: &ImageRef) -> Result<Vec<Relative>, StoreError> {
        let items = self.query(&image_pk(image), Some(DESCENDANT_PREFIX)).await?;
        let mut relatives = Vec::with_capacity(items.len());
        for item in &items {
            let (Some(found), Some(depth)) = (
                image_at(item, "image_id", "region"),
                item.get("depth").and_then(|d| d.as_n().ok()).and_then(|d| d.parse().ok()),
            ) else {
                // A state flag written before its closure entry: the entry will follow.
                continue;
            };
            relatives.push(Relative {
                image: found,
                depth,
                parent: image_at(item, "parent_image_id", "parent_region"),
                state: NodeState::from_flags(true, &flags(item)),
                name: text(item, "name").map(str::to_owned),
                account: text(item, "account").and_then(AccountId::parse),
            });
        }
        sort_relatives(&mut relatives);
        Ok(relatives)
    }

    async fn ancestors(&self, image: &ImageRef) -> Result<Vec<Relative>, StoreError> {
        let links = self.ancestors_of(image).await?;
        let images: Vec<ImageRef> = links.iter().map(|l| l.image.clone()).collect();
        let nodes = self.nodes(&images).await?;
        let mut relatives: Vec<Relative> = links
            .into_iter()
            .map(|link| {
                let node = nodes
                    .get(&link.image)
                    .cloned()
                    .unwrap_or_else(|| LineageNode::unknown(link.image.clone()));
                Relative {
                    image: link.image,
                    depth: link.depth,
                    parent: node.parent,
                    state: node.state,
                    name: node.name,
                    account: node.account,
                }
            })
            .collect();
        sort_relatives(&mut relatives);
        Ok(relatives)
    }
}

/// Dumps the whole table in a stable order (for tests and `replay` comparisons): one line of
/// JSON per item, sorted.
pub async fn dump_table(client: &Client, table: &str) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| StoreError::Aws {
                table: table.into(),
                operation: "Scan",
                message: super::describe(&e),
            })?;
        for item in page.items.unwrap_or_default() {
            let sorted: BTreeMap<String, String> =
                item.into_iter().map(|(k, v)| (k, render_value(&v))).collect();
            lines.push(serde_json::to_string(&sorted).unwrap_or_default());
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    lines.sort();
    Ok(lines)
}

fn render_value(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) => s.clone(),
        AttributeValue::N(n) => format!("N:{n}"),
        AttributeValue::Bool(b) => format!("B:{b}"),
        AttributeValue::Ss(ss) => {
            let mut ss = ss.clone();
            ss.sort();
            format!("SS:{}", ss.join(","))
        }
        AttributeValue::M(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, render_value(v))).collect();
            format!("M:{sorted:?}")
        }
        other => format!("{other:?}"),
    }
}
