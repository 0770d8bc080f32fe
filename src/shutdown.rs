//! The process-wide stop signal every background task selects on.

use tokio::sync::watch;

/// Resolves once `shutdown` turns true. If the sender is dropped without saying
/// so, it never resolves: background work must not stop by accident.
pub async fn until_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
