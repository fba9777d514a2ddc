//! `serve --metrics ADDR`: Prometheus text format over HTTP at
//! `http://ADDR/metrics`, served by metrics-exporter-prometheus's own
//! listener and fed from the server's events, so the transfer path records
//! nothing itself.
//!
//! - `tftplab_transfers_started_total{direction}`
//! - `tftplab_transfers_finished_total{direction,outcome}`: `ok`,
//!   `peer_error`, `local_error`, `timed_out`, `unconfirmed`
//! - `tftplab_bytes_total{direction}`: bytes of successful transfers
//! - `tftplab_retransmissions_total{direction}`
//! - `tftplab_timeouts_total{direction}`: retransmission timer expiries
//! - `tftplab_refused_total{code}`: requests answered with an ERROR, by its
//!   code (the text is left out: a malformed request's message could make
//!   labels without end)
//! - `tftplab_running_transfers`: started and not yet finished
//! - `tftplab_events_missed_total`: events the recorder fell behind on

use std::net::SocketAddr;
use tftplab::options::Direction;
use tftplab::runtime::ServerEvent;
use tokio::sync::broadcast;

/// Starts the HTTP listener on the current tokio runtime.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!("tftplab_transfers_started_total", "Transfers started");
    describe_counter!(
        "tftplab_transfers_finished_total",
        "Transfers finished, by outcome"
    );
    describe_counter!(
        "tftplab_bytes_total",
        Unit::Bytes,
        "Bytes moved by successful transfers"
    );
    describe_counter!("tftplab_retransmissions_total", "DATA or ACK sent again");
    describe_counter!("tftplab_timeouts_total", "Retransmission timer expiries");
    describe_counter!(
        "tftplab_refused_total",
        "Requests answered with an ERROR, by code"
    );
    describe_gauge!(
        "tftplab_running_transfers",
        "Transfers started and not yet finished"
    );
    describe_counter!(
        "tftplab_events_missed_total",
        "Server events the metrics recorder fell behind on"
    );
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Read => "read",
        Direction::Write => "write",
    }
}

/// Counts every event until the server's channel closes.
pub async fn record(mut rx: broadcast::Receiver<ServerEvent>) {
    use metrics::{counter, gauge};
    let running = gauge!("tftplab_running_transfers");
    running.set(0.0);
    loop {
        let event = match rx.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counter!("tftplab_events_missed_total").increment(n);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            ServerEvent::Started { direction: d, .. } => {
                counter!("tftplab_transfers_started_total", "direction" => direction(d))
                    .increment(1);
                running.increment(1.0);
            }
            ServerEvent::Finished {
                direction: d,
                result,
                counters,
                ..
            } => {
                let d = direction(d);
                let outcome = match &result {
                    Ok(s) => {
                        counter!("tftplab_bytes_total", "direction" => d).increment(s.bytes);
                        "ok"
                    }
                    Err(e) => super::events::failure_name(e),
                };
                counter!("tftplab_transfers_finished_total", "direction" => d, "outcome" => outcome)
                    .increment(1);
                let resent = counters.data_retransmitted
                    + counters.acks_retransmitted
                    + counters.control_retransmitted;
                counter!("tftplab_retransmissions_total", "direction" => d).increment(resent);
                counter!("tftplab_timeouts_total", "direction" => d).increment(counters.timeouts);
                running.decrement(1.0);
            }
            ServerEvent::Refused { code, .. } => {
                counter!("tftplab_refused_total", "code" => code.0.to_string()).increment(1);
            }
        }
    }
}
