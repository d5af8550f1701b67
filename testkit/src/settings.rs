//! The deprecation settings the tests start from, each test changing only what it tests.

use warden::config::Mode;
use warden::deprecation::Settings;

/// A deadline 90 days after creation with 14 days' grace and warning, the two newest of a
/// family kept, an image in use within 30 days kept, the template's tag keys, and neither
/// option on.
pub fn deprecation_settings(mode: Mode) -> Settings {
    Settings {
        mode,
        deprecate_after_days: 90,
        grace_days: 14,
        keep_latest: 2,
        warn_days: 14,
        in_use_days: 30,
        exempt_tag_key: "ami-warden:exempt".into(),
        family_tag_key: "ami-warden:family".into(),
        protect_newest: false,
        retire_shared_unused: false,
    }
}
