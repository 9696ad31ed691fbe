//! The store contract on a real 3-node nats-server cluster (R3 bucket).

use std::sync::Arc;

use kith_store::Store;
use kith_store_nats::testing::NatsCluster;
use kith_store_nats::NatsStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_three_node_cluster() {
    let cluster = NatsCluster::start(3).await;
    let store = NatsStore::connect(cluster.options("conf"))
        .await
        .expect("connect to the cluster");
    assert_eq!(store.replicas(), 3);
    kith_store::conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_values_on_a_three_node_cluster() {
    let cluster = NatsCluster::start(3).await;
    let store = NatsStore::connect(cluster.options("chunks"))
        .await
        .expect("connect to the cluster");
    // The server's default max_payload is 1 MiB: the limit is just under it.
    let max = store.limits().max_value;
    assert!((1_000_000..1024 * 1024).contains(&max), "limit {max}");
    kith_store::conformance::run_chunked(Arc::new(store)).await;
}
