//! [`ProvenanceStore`] in the lineage table: one Query of the launched image's partition (its
//! node, its `A#` ancestor entries, its own quarantine), then one BatchGetItem of each
//! ancestor's node and quarantine (see [`super::quarantine_store`] for the items).

use std::collections::HashMap;

use super::lineage_table::{
    image_at, image_pk, key, s, text, Item, LineageTable, ANCESTOR_PREFIX, NODE_SK,
};
use super::quarantine_store::{quarantine_from, QUARANTINE_SK};
use crate::ids::{AccountId, ImageRef};
use crate::lineage::StoreError;
use crate::provenance::run::ProvenanceStore;
use crate::provenance::{Known, Lineage};

/// What a node item says for provenance; `recorded` is whether the image has a node of its
/// own (created by an event or a backfill), not only its relatives' entries.
fn known(image: ImageRef, depth: u32, node: Option<&Item>) -> Known {
    Known {
        image,
        depth,
        recorded: node.is_some_and(|n| {
            n.contains_key("created_at")
                || n.contains_key("origin")
                || n.contains_key("parent_image_id")
                || n.contains_key("owner_alias")
        }),
        account: node.and_then(|n| text(n, "account")).and_then(AccountId::parse),
        owner_alias: node.and_then(|n| text(n, "owner_alias")).map(str::to_owned),
        parent_note: node.and_then(|n| text(n, "parent_note")).map(str::to_owned),
    }
}

impl ProvenanceStore for LineageTable {
    async fn lineage_of(&self, image: &ImageRef) -> Result<Lineage, StoreError> {
        let items = self.query(&image_pk(image), None).await?;
        let sk = |i: &Item| text(i, "sk").unwrap_or_default().to_owned();
        let node = items.iter().find(|i| sk(i) == NODE_SK);
        let mut quarantines: Vec<_> =
            items.iter().filter(|i| sk(i) == QUARANTINE_SK).filter_map(quarantine_from).collect();
        let mut ancestors: Vec<(ImageRef, u32)> = items
            .iter()
            .filter(|i| sk(i).starts_with(ANCESTOR_PREFIX))
            .filter_map(|i| {
                let depth = i.get("depth")?.as_n().ok()?.parse().ok()?;
                Some((image_at(i, "image_id", "region")?, depth))
            })
            .collect();
        ancestors.sort_by_key(|(_, depth)| *depth);
        let mut chain = vec![known(image.clone(), 0, node)];
        if !ancestors.is_empty() {
            let keys = ancestors
                .iter()
                .flat_map(|(a, _)| [key(image_pk(a), NODE_SK), key(image_pk(a), QUARANTINE_SK)])
                .collect();
            let found = self.batch_get(keys).await?;
            let mut nodes: HashMap<String, &Item> = HashMap::new();
            for item in &found {
                match text(item, "sk") {
                    Some(NODE_SK) => {
                        nodes.insert(text(item, "pk").unwrap_or_default().to_owned(), item);
                    }
                    Some(QUARANTINE_SK) => quarantines.extend(quarantine_from(item)),
                    _ => {}
                }
            }
            for (ancestor, depth) in ancestors {
                let node = nodes.get(&image_pk(&ancestor)).copied();
                chain.push(known(ancestor, depth, node));
            }
        }
        Ok(Lineage { chain, quarantines })
    }

    async fn record_owner_alias(&self, image: &ImageRef, alias: &str) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":alias".to_owned(), s(alias)),
            (":id".to_owned(), s(image.image_id.as_str())),
            (":region".to_owned(), s(image.region.as_str())),
        ]);
        self.client()
            .update_item()
            .table_name(self.table_name())
            .set_key(Some(key(image_pk(image), NODE_SK)))
            .update_expression("SET owner_alias = :alias, image_id = :id, #r = :region")
            .expression_attribute_names("#r", "region")
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("UpdateItem", e))
    }
}
