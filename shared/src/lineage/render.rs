//! Renders lineage answers for people and machines: text tables and trees, JSON, mermaid, dot.
//!
//! Input is what the store returns (the image's own node and its relatives); output is a
//! string. No I/O and no store access here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

use serde_json::{json, Value};

use super::{LineageNode, NodeState, Relative};
use crate::ids::ImageRef;

/// An output format of the `lineage` commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Mermaid,
    Dot,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown format {0:?}: expected text, json, mermaid or dot")]
pub struct ParseFormatError(String);

impl FromStr for Format {
    type Err = ParseFormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            "mermaid" => Ok(Self::Mermaid),
            "dot" => Ok(Self::Dot),
            other => Err(ParseFormatError(other.to_owned())),
        }
    }
}

/// Which question is being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Ancestors,
    Descendants,
    Tree,
}

/// Renders `subject` and its `relatives` (ancestors for [`View::Ancestors`], descendants
/// otherwise) in `format`.
pub fn render(view: View, format: Format, subject: &LineageNode, relatives: &[Relative]) -> String {
    match (format, view) {
        (Format::Json, View::Tree) => {
            let mut out =
                serde_json::to_string_pretty(&json_tree(subject, relatives)).unwrap_or_default();
            out.push('\n');
            out
        }
        (Format::Json, _) => {
            let rows: Vec<Value> = relatives.iter().map(json_relative).collect();
            let mut out = serde_json::to_string_pretty(&Value::Array(rows)).unwrap_or_default();
            out.push('\n');
            out
        }
        (Format::Text, View::Tree) => text_tree(subject, relatives),
        (Format::Text, view) => text_table(view, subject, relatives),
        (Format::Mermaid, view) => mermaid(view, subject, relatives),
        (Format::Dot, view) => dot(view, subject, relatives),
    }
}

fn json_relative(r: &Relative) -> Value {
    json!({
        "image_id": r.image.image_id,
        "region": r.image.region,
        "depth": r.depth,
        "parent_image_id": r.parent.as_ref().map(|p| p.image_id.as_str()),
        "parent_region": r.parent.as_ref().map(|p| p.region.as_str()),
        "state": r.state.as_str(),
        "name": r.name,
        "account": r.account,
    })
}

fn json_tree(subject: &LineageNode, relatives: &[Relative]) -> Value {
    let children = children_by_parent(relatives);
    fn node(
        image: &ImageRef,
        state: NodeState,
        name: Option<&str>,
        children: &BTreeMap<&ImageRef, Vec<&Relative>>,
    ) -> Value {
        let kids: Vec<Value> = children
            .get(image)
            .map(|v| {
                v.iter().map(|r| node(&r.image, r.state, r.name.as_deref(), children)).collect()
            })
            .unwrap_or_default();
        json!({
            "image_id": image.image_id,
            "region": image.region,
            "state": state.as_str(),
            "name": name,
            "children": kids,
        })
    }
    let mut tree = node(&subject.image, subject.state, subject.name.as_deref(), &children);
    if !subject.snapshot_return_codes.is_empty() {
        tree["snapshot_return_codes"] = json!(subject.snapshot_return_codes);
    }
    tree
}

/// What DeregisterImage said of each snapshot it was asked to delete with the subject, a line
/// each (nothing when it was not asked to).
fn snapshot_results(subject: &LineageNode) -> String {
    let mut out = String::new();
    for (snapshot, code) in &subject.snapshot_return_codes {
        let meaning = crate::event::SnapshotReturnCode::parse(code).meaning();
        let _ = writeln!(out, "  snapshot {snapshot}: {meaning} ({code})");
    }
    out
}

fn children_by_parent(relatives: &[Relative]) -> BTreeMap<&ImageRef, Vec<&Relative>> {
    let mut map: BTreeMap<&ImageRef, Vec<&Relative>> = BTreeMap::new();
    for r in relatives {
        if let Some(p) = &r.parent {
            map.entry(p).or_default().push(r);
        }
    }
    for kids in map.values_mut() {
        kids.sort_by(|a, b| a.image.cmp(&b.image));
    }
    map
}

fn label(image: &ImageRef, state: NodeState, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{} ({}) {} [{}]", image.image_id, image.region, n, state.as_str()),
        None => format!("{} ({}) [{}]", image.image_id, image.region, state.as_str()),
    }
}

fn text_tree(subject: &LineageNode, relatives: &[Relative]) -> String {
    let children = children_by_parent(relatives);
    let mut out = label(&subject.image, subject.state, subject.name.as_deref());
    out.push('\n');
    out.push_str(&snapshot_results(subject));
    fn walk(
        out: &mut String,
        at: &ImageRef,
        prefix: &str,
        children: &BTreeMap<&ImageRef, Vec<&Relative>>,
    ) {
        let Some(kids) = children.get(at) else { return };
        for (i, kid) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let _ = writeln!(
                out,
                "{prefix}{}{}",
                if last { "└── " } else { "├── " },
                label(&kid.image, kid.state, kid.name.as_deref())
            );
            let next = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(out, &kid.image, &next, children);
        }
    }
    walk(&mut out, &subject.image, "", &children);
    if relatives.is_empty() {
        out.push_str("(no descendants recorded)\n");
    }
    out
}

fn text_table(view: View, subject: &LineageNode, relatives: &[Relative]) -> String {
    let what = if view == View::Ancestors { "ancestors" } else { "descendants" };
    let mut out = format!(
        "{} of {}: {}\n",
        what,
        label(&subject.image, subject.state, subject.name.as_deref()),
        relatives.len()
    );
    if relatives.is_empty() {
        return out;
    }
    let rows: Vec<[String; 6]> = relatives
        .iter()
        .map(|r| {
            [
                r.depth.to_string(),
                r.image.image_id.to_string(),
                r.image.region.to_string(),
                r.state.as_str().to_owned(),
                r.parent.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                r.name.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["DEPTH", "IMAGE", "REGION", "STATE", "PARENT", "NAME"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| -> String {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        l.push('\n');
        l
    };
    out.push_str(&line(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

/// A node of a drawn graph: the image, its state and its name.
type GraphNode = (ImageRef, NodeState, Option<String>);

/// Nodes and edges of a view, for the graph formats: the subject plus relatives, and each
/// relative's edge to its parent (for ancestors, each step towards the subject).
fn graph(
    view: View,
    subject: &LineageNode,
    relatives: &[Relative],
) -> (Vec<GraphNode>, Vec<(ImageRef, ImageRef)>) {
    let mut nodes = vec![(subject.image.clone(), subject.state, subject.name.clone())];
    nodes.extend(relatives.iter().map(|r| (r.image.clone(), r.state, r.name.clone())));
    let edges = match view {
        View::Ancestors => {
            // Nearest first: subject ← depth 1 ← depth 2 …; draw parent → child.
            let mut chain: Vec<ImageRef> = vec![subject.image.clone()];
            let mut sorted: Vec<&Relative> = relatives.iter().collect();
            sorted.sort_by_key(|r| r.depth);
            chain.extend(sorted.iter().map(|r| r.image.clone()));
            chain.windows(2).map(|w| (w[1].clone(), w[0].clone())).collect()
        }
        _ => relatives
            .iter()
            .filter_map(|r| r.parent.clone().map(|p| (p, r.image.clone())))
            .collect(),
    };
    (nodes, edges)
}

fn node_ids(nodes: &[(ImageRef, NodeState, Option<String>)]) -> BTreeMap<ImageRef, String> {
    nodes.iter().enumerate().map(|(i, (img, _, _))| (img.clone(), format!("n{i}"))).collect()
}

fn mermaid(view: View, subject: &LineageNode, relatives: &[Relative]) -> String {
    let (nodes, edges) = graph(view, subject, relatives);
    let ids = node_ids(&nodes);
    let mut out = String::from("graph TD\n");
    for (img, state, name) in &nodes {
        let name =
            name.as_deref().map(|n| format!("<br/>{}", n.replace('"', "'"))).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}[\"{}<br/>{}{}<br/>{}\"]",
            ids[img],
            img.image_id,
            img.region,
            name,
            state.as_str()
        );
        if *state == NodeState::Deregistered {
            let _ = writeln!(out, "  class {} deregistered", ids[img]);
        }
    }
    for (from, to) in &edges {
        if let (Some(f), Some(t)) = (ids.get(from), ids.get(to)) {
            let _ = writeln!(out, "  {f} --> {t}");
        }
    }
    out.push_str("  classDef deregistered stroke-dasharray: 5 5,color:#888\n");
    out
}

fn dot(view: View, subject: &LineageNode, relatives: &[Relative]) -> String {
    let (nodes, edges) = graph(view, subject, relatives);
    let ids = node_ids(&nodes);
    let mut out = String::from("digraph lineage {\n  rankdir=TB;\n  node [shape=box];\n");
    for (img, state, name) in &nodes {
        let name =
            name.as_deref().map(|n| format!("\\n{}", n.replace('"', "'"))).unwrap_or_default();
        let style =
            if *state == NodeState::Deregistered { ", style=dashed, fontcolor=gray" } else { "" };
        let _ = writeln!(
            out,
            "  {} [label=\"{}\\n{}{}\\n{}\"{}];",
            ids[img],
            img.image_id,
            img.region,
            name,
            state.as_str(),
            style
        );
    }
    for (from, to) in &edges {
        if let (Some(f), Some(t)) = (ids.get(from), ids.get(to)) {
            let _ = writeln!(out, "  {f} -> {t};");
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ImageId, Region};

    fn img(id: &str, region: &str) -> ImageRef {
        ImageRef::new(Region::parse(region).unwrap(), ImageId::parse(id).unwrap())
    }

    fn rel(id: &str, region: &str, depth: u32, parent: &ImageRef, state: NodeState) -> Relative {
        Relative {
            image: img(id, region),
            depth,
            parent: Some(parent.clone()),
            state,
            name: None,
            account: None,
        }
    }

    fn story() -> (LineageNode, Vec<Relative>) {
        let gold = img("ami-01", "us-east-1");
        let g1 = img("ami-02", "eu-west-1");
        let g2 = img("ami-03", "us-east-1");
        let mut root = LineageNode::unknown(gold.clone());
        root.state = NodeState::Available;
        let rels = vec![
            rel("ami-02", "eu-west-1", 1, &gold, NodeState::Deregistered),
            rel("ami-03", "us-east-1", 2, &g1, NodeState::Available),
            rel("ami-04", "us-east-1", 3, &g2, NodeState::Pending),
        ];
        (root, rels)
    }

    #[test]
    fn json_descendants_is_an_array_with_the_documented_fields() {
        let (root, rels) = story();
        let v: Value =
            serde_json::from_str(&render(View::Descendants, Format::Json, &root, &rels)).unwrap();
        let first = &v.as_array().unwrap()[0];
        assert_eq!(first["image_id"], "ami-02");
        assert_eq!(first["region"], "eu-west-1");
        assert_eq!(first["depth"], 1);
        assert_eq!(first["parent_image_id"], "ami-01");
        assert_eq!(first["state"], "deregistered");
    }

    #[test]
    fn text_tree_keeps_the_chain_through_a_deregistered_image() {
        let (root, rels) = story();
        let text = render(View::Tree, Format::Text, &root, &rels);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("ami-02") && lines[1].contains("[deregistered]"), "{text}");
        assert!(lines[2].starts_with("    └── ami-03"), "{text}");
        assert!(lines[3].starts_with("        └── ami-04"), "{text}");
    }

    #[test]
    fn mermaid_and_dot_draw_every_edge() {
        let (root, rels) = story();
        let m = render(View::Tree, Format::Mermaid, &root, &rels);
        assert_eq!(m.matches("-->").count(), 3, "{m}");
        assert!(m.contains("class n1 deregistered"), "{m}");
        let d = render(View::Descendants, Format::Dot, &root, &rels);
        assert_eq!(d.matches("->").count(), 3, "{d}");
    }

    #[test]
    fn ancestors_graph_runs_from_the_oldest_to_the_subject() {
        let leaf = LineageNode::unknown(img("ami-04", "us-east-1"));
        let rels = vec![
            Relative {
                image: img("ami-03", "us-east-1"),
                depth: 1,
                parent: Some(img("ami-02", "eu-west-1")),
                state: NodeState::Available,
                name: None,
                account: None,
            },
            Relative {
                image: img("ami-02", "eu-west-1"),
                depth: 2,
                parent: None,
                state: NodeState::Deregistered,
                name: None,
                account: None,
            },
        ];
        let m = render(View::Ancestors, Format::Mermaid, &leaf, &rels);
        assert!(m.contains("n2 --> n1") && m.contains("n1 --> n0"), "{m}");
    }
}
