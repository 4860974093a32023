//! Tests of the parent module.
use super::*;

const MS: Duration = Duration::from_millis(1);

fn lanes(slots: &[(usize, usize)]) -> Vec<LaneState> {
    slots
        .iter()
        .map(|&(in_flight, depth)| LaneState {
            in_flight,
            depth,
            buffers: Vec::new(),
        })
        .collect()
}

fn config() -> BatcherConfig {
    BatcherConfig {
        max_batch: 8,
        max_delay: 5 * MS,
        fault: None,
    }
}

fn moment(queued: usize, waited: Duration, arriving: usize) -> Moment {
    let now = Instant::now();
    Moment {
        queued,
        oldest: (queued > 0).then(|| now - waited),
        arriving,
        flushing: false,
        now,
    }
}

#[test]
fn a_lone_request_starts_at_once_on_an_idle_lane() {
    let m = moment(1, Duration::ZERO, 0);
    assert_eq!(pick_lane(&lanes(&[(0, 1)]), &m, &config()), Some(0));
    assert_eq!(
        pick_lane(&lanes(&[(0, 1)]), &moment(0, MS, 0), &config()),
        None
    );
}

#[test]
fn an_idle_lane_waits_for_images_still_decoding_until_full_or_due() {
    let idle = lanes(&[(0, 1)]);
    assert_eq!(pick_lane(&idle, &moment(1, MS, 7), &config()), None);
    assert_eq!(pick_lane(&idle, &moment(7, 4 * MS, 1), &config()), None);
    assert_eq!(pick_lane(&idle, &moment(8, MS, 5), &config()), Some(0));
    assert_eq!(pick_lane(&idle, &moment(1, 5 * MS, 7), &config()), Some(0));
    let flushing = Moment {
        flushing: true,
        ..moment(1, Duration::ZERO, 7)
    };
    assert_eq!(pick_lane(&idle, &flushing, &config()), Some(0));
}

#[test]
fn a_busy_lane_takes_a_second_batch_only_when_due_and_only_into_a_free_slot() {
    let one_slot = lanes(&[(1, 1)]);
    assert_eq!(pick_lane(&one_slot, &moment(8, 9 * MS, 0), &config()), None);
    let two_slots = lanes(&[(1, 2)]);
    assert_eq!(pick_lane(&two_slots, &moment(3, MS, 0), &config()), None);
    assert_eq!(
        pick_lane(&two_slots, &moment(3, 5 * MS, 0), &config()),
        Some(0)
    );
    assert_eq!(pick_lane(&two_slots, &moment(8, MS, 0), &config()), Some(0));
}

#[test]
fn an_idle_lane_is_preferred_to_a_busy_one() {
    let mixed = lanes(&[(1, 2), (0, 2)]);
    assert_eq!(pick_lane(&mixed, &moment(8, 9 * MS, 0), &config()), Some(1));
    assert_eq!(pick_lane(&mixed, &moment(2, MS, 0), &config()), Some(1));
}

fn pending(
    len: usize,
    admission: &Arc<Admission>,
) -> (
    Pending,
    tokio::sync::oneshot::Receiver<crate::batching::queue::InferReply>,
) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let now = Instant::now();
    let p = Pending {
        input: vec![7; len].into(),
        kind: engine::InputKind::Image,
        enqueued: now,
        deadline: now + Duration::from_secs(5),
        reply,
        permit: admission.try_admit().expect("room"),
        link: None,
        queue_span: tracing::Span::none(),
    };
    (p, rx)
}

#[test]
fn an_image_of_the_wrong_size_fails_alone_and_the_others_keep_their_slots() {
    let admission = Admission::new(8, Default::default());
    let (a, _ra) = pending(engine::IMAGE_BYTES, &admission);
    let (bad, mut rbad) = pending(engine::IMAGE_BYTES - 3, &admission);
    let (c, _rc) = pending(engine::IMAGE_BYTES, &admission);
    let mut buffer = BatchBuffer::new(4);
    let tickets = fill(&mut buffer, vec![a, bad, c], Instant::now());
    assert_eq!((tickets.len(), buffer.len()), (2, 2));
    let refused = rbad.try_recv().expect("answered at once");
    assert!(matches!(refused, Err(EngineError::Inference(m)) if m.contains("bytes")));
    assert_eq!(admission.waiting(), 0, "every permit released");
}

#[test]
fn fewer_logits_than_images_is_an_error_for_each_not_a_panic() {
    let (tx1, mut rx1) = tokio::sync::oneshot::channel();
    let (tx2, mut rx2) = tokio::sync::oneshot::channel();
    let tickets = vec![(tx1, Duration::ZERO), (tx2, Duration::ZERO)];
    let out = BatchOutput {
        logits: &[1.0, 2.0, 3.0],
        classes: 3,
        timings: &[],
        lane: 0,
    };
    reply_all(tickets, 1, Ok(out));
    assert_eq!(rx1.try_recv().unwrap().unwrap().logits, vec![1.0, 2.0, 3.0]);
    assert!(matches!(
        rx2.try_recv().unwrap(),
        Err(EngineError::Inference(_))
    ));
}
