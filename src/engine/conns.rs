//! The named long-lived connections of a run or a persistent session (`ws.connect … as: alice`).
//!
//! Every connection kind (WebSocket today; raw TCP, MQTT…) lives in the same list behind
//! [`SessionConn`], so a session watches them all for a break and a new kind adds no field
//! here: its executor implements the trait in its own file and finds its connections back with
//! [`Conns::get`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use tokio::time::Instant;

/// A connection's end: resolves with the reason.
pub type Ending<'a> = Pin<Box<dyn Future<Output = String> + Send + 'a>>;

/// What a session needs of an open connection, whatever its protocol.
pub trait SessionConn: Send + Sync + 'static {
    /// Why the connection ended, once it has (`None` while open).
    fn closed(&self) -> Option<String>;
    /// Resolves with the reason when the connection ends.
    fn wait_closed(&self) -> Ending<'_>;
    /// When the connection was established.
    fn connected_at(&self) -> Instant;
    /// For [`Conns::get`]: the executor of a kind downcasts to its own connection type.
    fn as_any(&self) -> &dyn Any;
}

/// Open connections by name, in the order they were opened.
#[derive(Default)]
pub struct Conns(Vec<(String, Box<dyn SessionConn>)>);

impl Conns {
    /// The open connection `name` if it is of type `T`.
    pub fn get<T: 'static>(&self, name: &str) -> Option<&T> {
        self.find(name).and_then(|c| c.as_any().downcast_ref::<T>())
    }

    /// The open connection `name`, whatever its kind.
    pub fn find(&self, name: &str) -> Option<&dyn SessionConn> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| &**c)
    }

    /// Keep `conn` as `name`, replacing (and so closing) one of that name.
    pub fn insert(&mut self, name: &str, conn: impl SessionConn) {
        self.remove(name);
        // Exact room: a session's two connections kept room for four, in every session.
        self.0.reserve_exact(1);
        self.0.push((name.to_string(), Box::new(conn)));
    }

    /// Forget `name` (dropping it closes what is left of it).
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &dyn SessionConn)> {
        self.0.iter().map(|(n, c)| (n.as_str(), &**c))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first connection found ended, with why.
    pub fn broken(&self) -> Option<String> {
        self.iter()
            .find_map(|(n, c)| c.closed().map(|why| format!("connection `{n}`: {why}")))
    }

    /// When the oldest open connection was opened.
    pub fn connected_since(&self) -> Option<Instant> {
        self.iter().map(|(_, c)| c.connected_at()).min()
    }
}
