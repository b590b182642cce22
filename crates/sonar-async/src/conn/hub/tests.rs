//! The keeper's watch over hand-offs, step by step (the hand-off races are in the loom
//! models next to this file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::task::Waker;
use std::time::Duration;

use super::{Hub, TAKEOVER_DELAY, WATCH_INTERVAL_MAX, WatchCheck};

/// A transport wake-up handed to an application task waiting in `recv`.
fn hand_off(hub: &Hub) {
    hub.register_reader(Waker::noop());
    hub.transport_woken();
}

/// A hub whose watch the first hand-off has started (the keeper was woken and polled).
fn watching() -> Hub {
    let hub = Hub::default();
    hand_off(&hub);
    let call = hub.keeper_polled(Waker::noop());
    assert!(call.start_watch, "the first hand-off starts the watch");
    hub
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

/// One period of a busy connection: the application takes what it was handed, and the next
/// event is handed to it again, all before the check.
fn busy_period(hub: &Hub) -> WatchCheck {
    hub.handoff_taken();
    hand_off(hub);
    hub.handoff_taken();
    hub.watch_due()
}

#[test]
fn checks_back_off_to_the_maximum_while_every_hand_off_is_taken() {
    let hub = watching();
    let gaps: Vec<_> = (0..6).map(|_| busy_period(&hub)).collect();
    assert!(gaps.iter().all(|c| !c.stale));
    let gaps: Vec<_> = gaps.iter().map(|c| c.rearm).collect();
    let max = Some(WATCH_INTERVAL_MAX);
    assert_eq!(gaps, [ms(20), ms(40), ms(80), max, max, max]);
}

#[test]
fn a_hand_off_waiting_at_two_checks_in_a_row_is_taken_over() {
    let hub = watching();
    for _ in 0..4 {
        busy_period(&hub);
    }
    // The application stops taking its hand-offs.
    hub.handoff_taken();
    hand_off(&hub);
    let first = hub.watch_due();
    assert_eq!(
        first,
        WatchCheck {
            stale: false,
            rearm: Some(WATCH_INTERVAL_MAX)
        },
        "a hand-off made since the last check may be fresh: look again after the same gap"
    );
    let second = hub.watch_due();
    assert!(second.stale, "waited a whole check: the keeper takes over");
    assert_eq!(second.rearm, None, "nothing came since: the watch ends");
}

#[test]
fn the_hand_off_that_starts_the_watch_is_taken_over_at_the_first_check() {
    let hub = watching();
    let check = hub.watch_due();
    assert!(
        check.stale,
        "not taken within TAKEOVER_DELAY of the watch starting"
    );
}

#[test]
fn a_hand_off_taken_between_two_checks_is_not_stale_when_a_new_one_waits() {
    let hub = watching();
    busy_period(&hub);
    hand_off(&hub);
    assert_eq!(hub.watch_due().rearm, ms(20), "seen waiting: same gap");
    // Taken, and the next event handed off before the check.
    hub.handoff_taken();
    hand_off(&hub);
    let check = hub.watch_due();
    assert!(
        !check.stale,
        "the waiting hand-off is newer than the last check"
    );
    assert_eq!(check.rearm, ms(20));
    // Taken, nothing waiting at the next check: the gaps grow again.
    hub.handoff_taken();
    assert_eq!(busy_period(&hub).rearm, ms(40));
}

#[test]
fn after_a_takeover_or_a_quiet_spell_the_gaps_start_again_from_the_shortest() {
    let hub = watching();
    for _ in 0..4 {
        busy_period(&hub);
    }
    // Not taken for two checks, and events keep coming meanwhile.
    hand_off(&hub);
    hub.watch_due();
    hand_off(&hub);
    let takeover = hub.watch_due();
    assert!(takeover.stale);
    assert_eq!(takeover.rearm, Some(TAKEOVER_DELAY));
    hub.handoff_taken(); // the keeper drove
    assert_eq!(busy_period(&hub).rearm, ms(20));

    // Quiet: the watch ends, and the next hand-off wakes the keeper to start it again.
    hub.handoff_taken();
    assert_eq!(hub.watch_due().rearm, None);
    hand_off(&hub);
    assert!(hub.keeper_polled(Waker::noop()).start_watch);
    assert_eq!(busy_period(&hub).rearm, ms(20));
}
