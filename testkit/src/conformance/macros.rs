//! `conformance_tests!`: one `#[tokio::test]` per scenario.

/// Expands to one `#[tokio::test]` per conformance scenario, each named after
/// its scenario and run on a fresh harness from `$harness().await` (an async
/// fn returning a [`crate::conformance::Harness`]), plus a test checking that
/// the list below names every scenario.
///
/// Each scenario gets its own harness so failures are visible one by one and
/// a broker left broken by one scenario cannot fail another. The calling
/// crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// async fn harness() -> MyHarness { MyHarness::start().await }
/// backbone_testkit::conformance_tests!(harness);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($harness:path) => {
        $crate::conformance_tests!(@each $harness;
            publish_subscribe_headers_intact,
            concurrent_subscribe,
            many_subjects_concurrently,
            per_subject_order,
            subject_isolation,
            new_subscriber_receives_old_events,
            consumer_groups_each_get_everything,
            unacked_stay_pending,
            redelivery_after_nak,
            no_next_before_ack,
            continue_after_consumer_close,
            concurrent_close,
            continue_after_errors,
            nak_delay_honoured,
            ack_wait_redelivery,
            max_deliver_exhausted_reported,
            recreated_durable_skips_acked,
            term_never_redelivers,
            double_ack_not_pending,
            in_progress_extends_ack_wait,
            backoff_delays_honoured,
            dedup_window,
            expected_last_subject_seq,
            publish_routing_errors,
            get_by_seq,
            last_on_subject,
            read_ranges,
            stream_info_counts,
            purge_rules,
            start_by_time,
            start_by_sequence,
            filters,
            multiple_filter_subjects,
            consumer_errors,
            subject_rules_are_shared,
            durable_survives_restart,
            restart_during_publishes_loses_nothing,
            publisher_close_loses_nothing,
        );
    };
    (@each $harness:path; $($scenario:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::conformance::run_named(stringify!($scenario), $harness().await).await;
            }
        )+

        #[test]
        fn conformance_covers_every_scenario() {
            $crate::conformance::assert_covers(&[$(stringify!($scenario)),+]);
        }
    };
}
