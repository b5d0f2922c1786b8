//! Runs scenarios over time: the [`scheduler`] (every scenario on its interval, reloads), the
//! [`runner`] (the concurrency cap, one round per run or session, after-run bookkeeping),
//! persistent [`session`]s (connections kept across runs), and the [`observer`]s that finished
//! runs are handed to — outputs the runtime does not know.

pub mod log;
pub mod observer;
pub mod recent;
pub mod runner;
pub mod scheduler;
pub mod session;
pub mod state;
