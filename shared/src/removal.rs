//! The one order of calls in which AMI Warden removes a resource it must be able to bring back:
//! tag it with the selector of the Recycle Bin rule that keeps it, make the destructive call,
//! and when that call fails, ask what happened and take the tag off again only where the
//! resource is known to be still there. The deprecation enforcer (DeregisterImage) and the
//! snapshot reaper (DeleteSnapshot) both carry out their decisions through [`tag_then_remove`].
//!
//! Not for deciding: whether a resource may go, and the last look at it before it does, stay
//! with the policies and their shells ([`crate::deprecation`], [`crate::reaper`]). This module
//! knows nothing of EC2; the callers describe the calls through [`Removable`].

/// The calls that remove one resource, as the caller makes them.
#[allow(async_fn_in_trait)]
pub trait Removable {
    /// Tags the resource with the selector of the Recycle Bin rule that keeps it (which also
    /// lets AMI Warden's role remove it).
    async fn tag(&self) -> Result<(), String>;
    /// The destructive call.
    async fn remove(&self) -> Result<(), String>;
    /// Asked after [`Self::remove`] failed: an error can hide a removal that happened (its
    /// answer lost on the way back).
    async fn presence(&self) -> Presence;
    /// Takes the tag off again.
    async fn untag(&self) -> Result<(), String>;
}

/// What is known of a resource after the call that should have removed it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// It is gone: the call did its work, only its answer was lost.
    Gone,
    /// It is still there: the call did nothing.
    StillThere,
    /// The question failed too (why).
    Unknown(String),
}

/// How a removal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The resource is gone: the call succeeded, or it failed and the resource is gone anyway.
    Removed,
    /// The tag could not be added (AWS's error): nothing was removed.
    NotTagged(String),
    /// The call failed (AWS's error) and the resource is still there. The tag was taken off
    /// again, so that the resource does not stay removable under AMI Warden's role; when that
    /// failed too, `untag_failed` says why.
    Refused { error: String, untag_failed: Option<String> },
    /// The call failed and whether the resource is still there is unknown (`presence`: why).
    /// The tag stays, as the record that a removal was started: the deprecation enforcer keeps
    /// an image that carries its tag yet is registered until someone takes the tag off.
    Unsure { error: String, presence: String },
}

/// Tags `resource`, removes it, and after a failed removal asks whether it is still there:
/// gone counts as removed; still there is untagged again; unknown keeps the tag.
pub async fn tag_then_remove(resource: &impl Removable) -> Removal {
    if let Err(e) = resource.tag().await {
        return Removal::NotTagged(e);
    }
    let Err(error) = resource.remove().await else {
        return Removal::Removed;
    };
    match resource.presence().await {
        Presence::Gone => Removal::Removed,
        Presence::StillThere => {
            Removal::Refused { error, untag_failed: resource.untag().await.err() }
        }
        Presence::Unknown(presence) => Removal::Unsure { error, presence },
    }
}

/// A refused removal's `error`, followed by why the `tag_key` tag could not be taken off again
/// when it could not.
pub fn refusal(error: String, untag_failed: Option<String>, tag_key: &str) -> String {
    match untag_failed {
        None => error,
        Some(untag) => format!("{error}; the {tag_key} tag could not be removed: {untag}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A resource whose calls answer as scripted, recording which were made.
    struct Scripted {
        tag: Result<(), String>,
        remove: Result<(), String>,
        presence: Presence,
        untag: Result<(), String>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Scripted {
        fn new() -> Self {
            Self {
                tag: Ok(()),
                remove: Ok(()),
                presence: Presence::StillThere,
                untag: Ok(()),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn refused(presence: Presence) -> Self {
            Self { remove: Err("refused".into()), presence, ..Self::new() }
        }
        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
        fn call(&self, name: &'static str) {
            self.calls.lock().unwrap().push(name);
        }
    }

    impl Removable for Scripted {
        async fn tag(&self) -> Result<(), String> {
            self.call("tag");
            self.tag.clone()
        }
        async fn remove(&self) -> Result<(), String> {
            self.call("remove");
            self.remove.clone()
        }
        async fn presence(&self) -> Presence {
            self.call("presence");
            self.presence.clone()
        }
        async fn untag(&self) -> Result<(), String> {
            self.call("untag");
            self.untag.clone()
        }
    }

    #[tokio::test]
    async fn a_removal_that_succeeds_asks_nothing_more() {
        let r = Scripted::new();
        assert_eq!(tag_then_remove(&r).await, Removal::Removed);
        assert_eq!(r.calls(), ["tag", "remove"]);
    }

    #[tokio::test]
    async fn a_failed_tag_removes_nothing() {
        let r = Scripted { tag: Err("throttled".into()), ..Scripted::new() };
        assert_eq!(tag_then_remove(&r).await, Removal::NotTagged("throttled".into()));
        assert_eq!(r.calls(), ["tag"]);
    }

    #[tokio::test]
    async fn a_failed_removal_of_what_is_gone_anyway_counts_as_removed_and_keeps_the_tag() {
        let r = Scripted::refused(Presence::Gone);
        assert_eq!(tag_then_remove(&r).await, Removal::Removed);
        assert_eq!(r.calls(), ["tag", "remove", "presence"]);
    }

    #[tokio::test]
    async fn a_failed_removal_of_what_is_still_there_takes_the_tag_off_again() {
        let r = Scripted::refused(Presence::StillThere);
        assert_eq!(
            tag_then_remove(&r).await,
            Removal::Refused { error: "refused".into(), untag_failed: None }
        );
        assert_eq!(r.calls(), ["tag", "remove", "presence", "untag"]);
        let r = Scripted { untag: Err("denied".into()), ..Scripted::refused(Presence::StillThere) };
        assert_eq!(
            tag_then_remove(&r).await,
            Removal::Refused { error: "refused".into(), untag_failed: Some("denied".into()) }
        );
    }

    #[tokio::test]
    async fn a_failed_removal_of_what_may_be_gone_leaves_the_tag() {
        let r = Scripted::refused(Presence::Unknown("timed out".into()));
        assert_eq!(
            tag_then_remove(&r).await,
            Removal::Unsure { error: "refused".into(), presence: "timed out".into() }
        );
        assert_eq!(r.calls(), ["tag", "remove", "presence"]);
    }

    #[test]
    fn a_refusal_names_the_tag_it_could_not_take_off() {
        assert_eq!(refusal("refused".into(), None, "k"), "refused");
        assert_eq!(
            refusal("refused".into(), Some("denied".into()), "ami-warden:retired"),
            "refused; the ami-warden:retired tag could not be removed: denied"
        );
    }
}
