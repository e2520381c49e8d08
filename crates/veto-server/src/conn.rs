//! Accepting connections, with limits that hold against clients who never finish a request.
//!
//! `axum::serve` runs hyper without a timer: no header read timeout, no idle timeout, no cap on
//! connections. A few thousand half-sent requests then hold a node's file descriptors until
//! `accept` fails for everyone (health checks and the database pool included). So veto accepts
//! connections itself, with hyper-util's server builder (the maintained layer axum's own
//! `serve` is built on; it exposes hyper's timer-driven timeouts, which axum does not):
//! - a **header read timeout**, which hyper also starts whenever a kept-alive connection goes
//!   idle after a response: it is the idle timeout too;
//! - a **body deadline** for the whole request body (`RequestBodyDeadlineLayer`, applied by
//!   [`app_layers`]): a client trickling one byte a second does not hold a request forever;
//! - a **connection cap** for the node and one **per client address** (IPv6 by /64): a
//!   connection beyond either is closed at once, so one address cannot take every slot, and
//!   the node never runs out of file descriptors (`max_connections` is kept below the process's
//!   open-file limit, see [`fit_to_fd_limit`]).
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::ratelimit::client_key;

/// How the node treats connections (`VETO_MAX_CONNECTIONS`, `VETO_MAX_CONNECTIONS_PER_IP`,
/// `VETO_HEADER_TIMEOUT`, `VETO_BODY_TIMEOUT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// 0: no per-address cap (behind a reverse proxy every client has the proxy's address).
    pub max_per_ip: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 10_000,
            max_per_ip: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// File descriptors kept for everything that is not a client connection: the database pool,
/// the data files, Redis, the listener, logs.
pub const FD_RESERVE: u64 = 256;

/// The connection cap that fits an open-file limit of `nofile`, and whether it had to shrink.
pub fn fit_to_fd_limit(max_connections: usize, nofile: u64) -> (usize, bool) {
    let room = nofile.saturating_sub(FD_RESERVE).max(1);
    if (max_connections as u64) <= room {
        (max_connections, false)
    } else {
        (room as usize, true)
    }
}

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// Admission control: a connection holds a [`Slot`] for as long as it is open.
#[derive(Debug, Clone)]
struct Admission {
    limits: ConnLimits,
    open: Arc<Mutex<Open>>,
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Total,
    PerClient,
}

impl Admission {
    fn admit(&self, peer: IpAddr) -> Result<Slot, Refused> {
        let client = client_key(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max_connections {
            return Err(Refused::Total);
        }
        let mine = open.per_client.entry(client).or_default();
        if self.limits.max_per_ip > 0 && *mine >= self.limits.max_per_ip {
            return Err(Refused::PerClient);
        }
        *mine += 1;
        open.total += 1;
        crate::metrics::connections_open(open.total);
        Ok(Slot {
            admission: self.clone(),
            client,
        })
    }
}

/// One admitted connection; dropping it frees the slot.
struct Slot {
    admission: Admission,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
        crate::metrics::connections_open(open.total);
    }
}

/// The layers every request goes through before routing: the body deadline.
pub fn app_layers(app: Router, limits: &ConnLimits) -> Router {
    app.layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
        limits.body_timeout,
    ))
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish (up
/// to `drain`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let admission = Admission {
        limits,
        open: Default::default(),
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // An HTTP/2 connection that stops answering pings is closed.
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_errors = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or another transient error): wait a moment
                    // instead of spinning; the cap normally prevents this.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = accept_errors, "accept failed; see docs/deployment.md on the open-file limit");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                crate::metrics::connection_refused(match why {
                    Refused::Total => "max_connections",
                    Refused::PerClient => "max_connections_per_ip",
                });
                drop(stream);
                continue;
            }
        };
        serve_one(&builder, &graceful, stream, peer, app.clone(), slot);
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_secs = drain.as_secs(),
            "connections still open after the drain time; closing them"
        );
    }
}

fn serve_one(
    builder: &Arc<Builder<TokioExecutor>>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    // The peer address is the rate limiter's client, as `into_make_service_with_connect_info`
    // would have set it.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        // A Router never fails (`Infallible`): every error is already a response.
        app.clone().oneshot(req)
    });
    let header_timeout = slot.admission.limits.header_timeout;
    let builder = builder.clone();
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        if !request_begins(&stream, header_timeout).await {
            return;
        }
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        // Errors here are the client's (reset, timed out, malformed): nothing to report.
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
        drop(slot);
    });
}

/// Waits, up to `within`, until the client has sent enough for hyper to tell HTTP/1 from
/// HTTP/2: hyper's header read timeout starts only once it has, so without this a connection
/// that sends nothing (or a prefix of the HTTP/2 preface) would be held forever. `false`: close.
async fn request_begins(stream: &TcpStream, within: Duration) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let wait = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buf.len() || buf[..n] != H2_PREFACE[..n] => return true,
                // Part of the HTTP/2 preface: `peek` would return at once again, so wait a
                // little for the rest (only HTTP/2 clients and attackers get here).
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(within, wait).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: usize, per_ip: usize) -> Admission {
        Admission {
            limits: ConnLimits {
                max_connections: total,
                max_per_ip: per_ip,
                ..ConnLimits::default()
            },
            open: Default::default(),
        }
    }

    #[test]
    fn one_address_cannot_take_every_slot_and_slots_come_back() {
        let a = admission(10, 3);
        let hostile: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| a.admit(hostile).unwrap()).collect();
        assert_eq!(a.admit(hostile).err(), Some(Refused::PerClient));
        let mine = a.admit(other).expect("another address still gets in");
        drop(held);
        assert!(
            a.admit(hostile).is_ok(),
            "closed connections free their slots"
        );
        drop(mine);
    }

    #[test]
    fn the_node_cap_holds_across_addresses() {
        let a = admission(2, 0);
        let _x = a.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _y = a.admit("10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("10.0.0.3".parse().unwrap()).err(),
            Some(Refused::Total)
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = admission(10, 1);
        let _x = a.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("2001:db8::2".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
        assert!(a.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_cap_fits_under_the_open_file_limit() {
        assert_eq!(fit_to_fd_limit(10_000, 1_024), (768, true));
        assert_eq!(fit_to_fd_limit(10_000, 1_048_576), (10_000, false));
        assert_eq!(fit_to_fd_limit(10, 100), (1, true));
    }
}
