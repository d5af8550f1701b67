//! Tolerant accessors over CloudTrail JSON.
//!
//! CloudTrail records are not uniform: keys come in lowerCamel or PascalCase, lists come as
//! `{"items": [...]}`, as a bare array, or (after some pipelines) as a single object; newer APIs
//! wrap their parameters in `{"<Op>Request": {...}}` and list members in `{"content": ...}`;
//! booleans are sometimes strings. These functions absorb all of that and never panic; they
//! know nothing about which fields an event needs (that is [`super::parse`]'s job).

use serde_json::Value;

/// The value under `key`: an exact match first, else a case-insensitive one. `null` counts as
/// absent.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    let found = obj
        .get(key)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))?;
    (!found.is_null()).then_some(found)
}

/// The value at a path of keys, each looked up with [`get`].
pub fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |at, key| get(at, key))
}

/// A non-empty, trimmed string: from a string, a number, or a wrapped `{"content": …}` member.
pub fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => get(v, "content").and_then(string),
        _ => None,
    }
}

/// The string under `key` ([`get`] then [`string`]).
pub fn string_at(v: &Value, key: &str) -> Option<String> {
    get(v, key).and_then(string)
}

/// A boolean from `true`/`false` or the strings `"true"`/`"false"` (any case).
pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The members of a list however it is logged: `{"items": [...]}`, `{"items": {...}}` (one
/// member collapsed to an object), `{"item": ...}`, a bare array, or a single member object.
/// Absent or `null` gives no members.
pub fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().filter(|m| !m.is_null()).collect(),
        Some(obj @ Value::Object(_)) => match get(obj, "items").or_else(|| get(obj, "item")) {
            Some(inner) => items(Some(inner)),
            None => vec![obj],
        },
        Some(other) => vec![other],
    }
}

/// The parameters of `op` with the wrapped form unwrapped: `{"<op>Request": {...}}` gives the
/// inner object, anything else is returned as is.
pub fn unwrap_wrapped<'a>(params: &'a Value, op: &str, suffix: &str) -> &'a Value {
    let key = format!("{op}{suffix}");
    match get(params, &key) {
        Some(inner @ Value::Object(_)) => inner,
        _ => params,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_match_in_any_case_and_null_is_absent() {
        let v = json!({"imageId": "ami-1", "ImageID2": "x", "gone": null});
        assert_eq!(string_at(&v, "ImageId").as_deref(), Some("ami-1"));
        assert_eq!(string_at(&v, "imageid2").as_deref(), Some("x"));
        assert!(get(&v, "gone").is_none());
        assert!(get(&json!([1]), "x").is_none());
    }

    #[test]
    fn items_accept_every_list_shape() {
        let one = json!({"group": "all"});
        assert_eq!(items(Some(&json!({"items": [one, {"userId": "1"}]}))).len(), 2);
        assert_eq!(items(Some(&json!({"items": {"group": "all"}})))[0], &one);
        assert_eq!(items(Some(&json!({"item": [{"group": "all"}]})))[0], &one);
        assert_eq!(items(Some(&json!([{"group": "all"}, null])))[0], &one);
        assert_eq!(items(Some(&one))[0], &one);
        assert!(items(None).is_empty());
        assert!(items(Some(&Value::Null)).is_empty());
    }

    #[test]
    fn strings_come_from_content_wrappers_and_numbers() {
        assert_eq!(string(&json!({"content": "ami-1", "tag": 1})).as_deref(), Some("ami-1"));
        assert_eq!(string(&json!(123456789012u64)).as_deref(), Some("123456789012"));
        assert_eq!(string(&json!("  ")), None);
        assert_eq!(string(&json!(true)), None);
    }

    #[test]
    fn booleans_accept_strings() {
        assert_eq!(boolean(&json!("TRUE")), Some(true));
        assert_eq!(boolean(&json!(false)), Some(false));
        assert_eq!(boolean(&json!("yes")), None);
    }

    #[test]
    fn wrapped_requests_unwrap_and_flat_ones_stay() {
        let wrapped = json!({"EnableImageDeprecationRequest": {"ImageId": "ami-1"}});
        assert_eq!(
            string_at(unwrap_wrapped(&wrapped, "EnableImageDeprecation", "Request"), "imageId")
                .as_deref(),
            Some("ami-1")
        );
        let flat = json!({"imageId": "ami-1"});
        assert_eq!(unwrap_wrapped(&flat, "EnableImageDeprecation", "Request"), &flat);
        let empty = json!({"DisableImageBlockPublicAccessRequest": ""});
        assert_eq!(unwrap_wrapped(&empty, "DisableImageBlockPublicAccess", "Request"), &empty);
    }
}
