//! How long a run may go on starting destructive actions. A Lambda stopped at its timeout in
//! the middle of a retirement or a deletion leaves the resource tagged for it yet still there,
//! and sends no summary; the sweeps instead stop starting actions [`ACTION_MARGIN`] before the
//! invocation's deadline and report what is left for the next run.

use std::time::{Duration, Instant, SystemTime};

/// Time kept back from a run's deadline: one batch of actions under EC2's throttling (with the
/// SDK's retries), the audit writes and the summary notification fit in it.
pub const ACTION_MARGIN: Duration = Duration::from_secs(120);

/// How long a run with `remaining` time left may go on starting actions.
pub fn time_to_act(remaining: Duration) -> Duration {
    remaining.saturating_sub(ACTION_MARGIN)
}

/// The instant after which a run whose invocation ends at `deadline` starts no more actions.
pub fn stop_by(deadline: SystemTime) -> Instant {
    Instant::now() + time_to_act(deadline.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Whether a run that must stop starting actions at `stop_by` (`None`: never) is past it.
pub fn out_of_time(stop_by: Option<Instant>) -> bool {
    stop_by.is_some_and(|stop_by| Instant::now() >= stop_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_stop_the_margin_before_the_deadline() {
        assert_eq!(time_to_act(Duration::from_secs(900)), Duration::from_secs(780));
        assert_eq!(time_to_act(ACTION_MARGIN), Duration::ZERO);
        assert_eq!(
            time_to_act(Duration::from_secs(30)),
            Duration::ZERO,
            "less left than the margin: nothing starts"
        );
    }

    #[test]
    fn a_deadline_in_the_past_or_within_the_margin_is_out_of_time_at_once() {
        assert!(out_of_time(Some(stop_by(SystemTime::now() - Duration::from_secs(5)))));
        assert!(out_of_time(Some(stop_by(SystemTime::now() + Duration::from_secs(60)))));
        assert!(!out_of_time(Some(stop_by(SystemTime::now() + Duration::from_secs(900)))));
        assert!(!out_of_time(None));
    }
}
