//! Runs scenarios over time: the scheduler (every scenario on its interval), persistent sessions
//! (connections kept across runs).

pub mod scheduler;
pub mod session;
