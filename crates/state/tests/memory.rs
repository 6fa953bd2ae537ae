//! The shared suite against the in-memory store.

#[macro_use]
mod suite;

use std::future::Future;
use std::sync::Arc;

use cairn_state::Store;

async fn with_memory<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = cairn_state::open("memory:").await.expect("open memory:");
    test(store).await;
}

store_tests!(with_memory);
