//! The duplicate filter shared by several shard threads (it lives in `proto`, which spawns no
//! thread itself; the threads are this test's).

use std::sync::Arc;

use nanopeer::proto::filter::DuplicateFilter;

#[test]
fn shared_between_threads_each_payload_is_new_once() {
    let f = Arc::new(DuplicateFilter::new(1 << 12, [3; 16], 60_000));
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || {
                (0..500u32)
                    .filter(|i| !f.check_and_insert(&(i * 4 + t).to_le_bytes(), 0))
                    .count()
            })
        })
        .collect();
    let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 2000 distinct payloads in 4096 slots: each is new on first sight
    assert_eq!(fresh, 2000);
}
