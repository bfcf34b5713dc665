//! The service scenarios (`offline_signer_testkit::service_suite`, listed once there) with the store
//! in PostgreSQL (a database of its own per scenario, on the cluster the test kit starts) and the
//! in-process `software-insecure` signer: the service's request path on a store whose calls are
//! futures ([`offline_signer::store::RemoteStore`]) answers exactly as on sled.

use std::sync::Arc;

use offline_signer::service::Settings;
use offline_signer::signer::software::SoftwareSigner;
use offline_signer::store::Store;
use offline_signer_testkit::service_harness::{Harness, Kept};
use offline_signer_testkit::store_backends::{Backend as _, Postgres};

fn run_with(_name: &str, settings: Settings, body: impl AsyncFnOnce(&Harness)) {
    let Some(database) = Postgres::fresh() else {
        return;
    };
    offline_signer_testkit::runtime().block_on(async {
        let store: Arc<dyn Store> = Arc::new(database.try_open().expect("the test store opens"));
        assert!(
            store.remote().is_some(),
            "PostgreSQL offers the remote calls"
        );
        let signer = Arc::new(SoftwareSigner::new_in_memory());
        let kept = Kept::Database(database.location());
        let harness = Harness::with_store(signer, store, settings, kept).await;
        body(&harness).await;
    });
}

offline_signer_testkit::service_scenarios!(run_with);
