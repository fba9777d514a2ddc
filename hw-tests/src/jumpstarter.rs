//! Jumpstarter's TFTP example as a hardware check: with the board's link
//! up, start the server, upload `test.bin` through the store, check it is
//! listed (and that uploading the same bytes again is skipped), let the
//! caller use it while it is served, delete it, and check it is gone.

use crate::boards::Board;
use crate::link::RawLink;
use crate::runner::sha256_hex;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tftplab::runtime::{serve, ServerOptions};
use tftplab::store::{Store, StoreConfig};
use tftplab_sim::lab::trace::Trace;
use tftplab_sim::lab::FaultPlan;

/// The uploaded name, as in Jumpstarter's example.
pub const NAME: &str = "test.bin";

/// Runs the example on `board`. `while_served` runs while `test.bin` is
/// listed, with the server's address (a stand-in board fetches it there).
/// Returns a one-line report, or what went wrong.
pub async fn store_check<F, Fut>(
    board: &Board,
    data: &[u8],
    while_served: F,
) -> Result<String, String>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let root = tempfile::tempdir().map_err(|e| format!("temporary root: {e}"))?;
    let (link, handle) =
        RawLink::open(board.link_config(FaultPlan::default(), 0, None, Trace::new()))
            .map_err(|e| format!("board {}: {e}", board.name))?;
    let store =
        Arc::new(Store::new(StoreConfig::new(root.path())).map_err(|e| format!("store: {e}"))?);
    let options = ServerOptions {
        bind: SocketAddr::from((board.server_ip, 69)),
        ..ServerOptions::default()
    };
    let server = serve(link, store.clone(), options)
        .await
        .map_err(|e| format!("serving on {}: {e}", board.server_ip))?;
    let checked = async {
        let put = store
            .put_bytes(NAME, data)
            .map_err(|e| format!("upload {NAME}: {e}"))?;
        let want = sha256_hex(data);
        if put.sha256_hex() != want || put.size != data.len() as u64 || !put.created {
            return Err(format!("upload {NAME}: the store reports {put:?}"));
        }
        let listed = store.list().map_err(|e| format!("list: {e}"))?;
        if !listed
            .iter()
            .any(|e| e.name == NAME && e.size == data.len() as u64)
        {
            return Err(format!("{NAME} is not listed after the upload"));
        }
        if store.sha256(NAME).map_err(|e| format!("sha256: {e}"))? != want {
            return Err(format!(
                "{NAME}'s SHA-256 in the store differs from the upload's"
            ));
        }
        let again = store
            .put_bytes(NAME, data)
            .map_err(|e| format!("second upload: {e}"))?;
        if !again.skipped_identical {
            return Err(format!("uploading the same {NAME} again was not skipped"));
        }
        while_served(server.local_addr()).await?;
        store
            .delete(NAME)
            .map_err(|e| format!("delete {NAME}: {e}"))?;
        let listed = store.list().map_err(|e| format!("list: {e}"))?;
        if listed.iter().any(|e| e.name == NAME) || store.exists(NAME) {
            return Err(format!("{NAME} is still there after the delete"));
        }
        Ok(format!(
            "{NAME} ({} bytes, sha256 {}) uploaded, listed, served at {}, deleted, gone",
            data.len(),
            &want[..16],
            server.local_addr()
        ))
    }
    .await;
    server.stop(Duration::from_secs(1)).await;
    handle.close();
    checked
}
