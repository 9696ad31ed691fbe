//! The operator's rotation step (`Authority::rotate_intermediate`) and the
//! status every client shows (`IntermediateStatus::to_wire`), with an
//! injected clock: steady, then publishing (an early activation refused,
//! saying until when, changing nothing), then ready, then steady on the
//! next generation with the replaced one listed.

use kith_authority::{Error, IntermediateStep, Settings};
use time::Duration;

mod common;

#[tokio::test]
async fn rotate_then_status_through_every_phase() {
    let settings = Settings {
        intermediate_publish: Some(Duration::minutes(10)),
        ..Settings::default()
    };
    let h = common::Harness::new(common::Backend::Mem, settings).await;
    let a = &h.authority;

    let st = a
        .intermediate_status("cluster")
        .expect("status")
        .to_wire(a.now());
    assert_eq!((st.phase.as_str(), st.generation), ("steady", 1), "{st:?}");
    assert!(st.prepared.is_none() && st.previous.is_empty(), "{st:?}");
    assert!(st.detail.contains("kith ca rotate"), "{st:?}");

    let step = a
        .rotate_intermediate("cluster", "admin:test", false)
        .await
        .expect("prepare");
    assert_eq!(step, IntermediateStep::Prepared(2));
    let st = a
        .intermediate_status("cluster")
        .expect("status")
        .to_wire(a.now());
    assert_eq!(st.phase, "publishing", "{st:?}");
    let prepared = st.prepared.clone().expect("a prepared intermediate");
    assert_eq!(prepared.generation, 2);
    assert!(
        st.detail.contains(&prepared.activate_at) && st.detail.contains("CRL"),
        "the detail says until when and why: {st:?}"
    );

    // Too early: refused with the time it may, and nothing changes.
    let before = h.store.list("authority/").await.expect("list");
    match a.rotate_intermediate("cluster", "admin:test", false).await {
        Err(e @ Error::RotationNotReady(_)) => {
            assert!(e.to_string().contains(&prepared.activate_at), "{e}")
        }
        other => panic!("expected rotation-not-ready, got {other:?}"),
    }
    let after = h.store.list("authority/").await.expect("list");
    assert_eq!(
        before.iter().map(|e| e.revision).collect::<Vec<_>>(),
        after.iter().map(|e| e.revision).collect::<Vec<_>>()
    );

    h.clock.advance(Duration::minutes(11));
    let st = a
        .intermediate_status("cluster")
        .expect("status")
        .to_wire(a.now());
    assert_eq!(st.phase, "ready", "{st:?}");

    let step = a
        .rotate_intermediate("cluster", "admin:test", false)
        .await
        .expect("activate");
    assert_eq!(step, IntermediateStep::Activated(2));
    let st = a
        .intermediate_status("cluster")
        .expect("status")
        .to_wire(a.now());
    assert_eq!((st.phase.as_str(), st.generation), ("steady", 2), "{st:?}");
    assert_eq!(st.previous.len(), 1, "{st:?}");
    assert_eq!(st.previous[0].generation, 1);

    // An unknown authority is refused as such.
    assert!(matches!(
        a.rotate_intermediate("nosuch", "admin:test", true).await,
        Err(Error::UnknownAuthority(_))
    ));
}

#[tokio::test]
async fn force_activates_before_the_delay() {
    let h = common::Harness::mem().await;
    let a = &h.authority;
    a.rotate_intermediate("cluster", "admin:test", false)
        .await
        .expect("prepare");
    let step = a
        .rotate_intermediate("cluster", "admin:test", true)
        .await
        .expect("forced activation");
    assert_eq!(step, IntermediateStep::Activated(2));
    assert_eq!(
        a.intermediate_status("cluster")
            .expect("status")
            .active
            .generation,
        2
    );
}
