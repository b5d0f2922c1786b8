//! The queue a long-lived connection's handles send their commands on (send, close, STARTTLS…)
//! to the connection's task, instead of a tokio `mpsc` channel.
//!
//! Why not `mpsc`: a channel costs ~800 bytes for as long as the connection lives (its shared
//! state is padded to cache lines, and its first block of 32 slots is allocated up front), and a
//! connection sends a command every few seconds at most. Here the idle cost is one small
//! allocation (a mutex around an empty queue, and a [`Notify`]); the queue's slots exist only
//! while commands wait in it.
//!
//! The semantics are those of the channel the connections used: [`Receiver::recv`] ends with
//! `None` once every [`Sender`] is gone and the queue is drained (the last handle was dropped:
//! the task closes the connection), and once the [`Receiver`] is gone (the task ended), sends
//! fail and queued commands are dropped, so whoever waits on a reply inside them hears at once.
//! Unbounded, but each handle waits for its command's reply, so the queue holds at most one
//! command per caller.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Mailbox<T> {
    state: Mutex<State<T>>,
    /// The receiver's wake-up: a command arrived, or the last sender left.
    wake: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    /// The receiver still exists.
    open: bool,
}

impl<T> Mailbox<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handles' end; clone it for each handle.
pub(crate) struct Sender<T>(Arc<Mailbox<T>>);

/// The connection task's end.
pub(crate) struct Receiver<T>(Arc<Mailbox<T>>);

pub(crate) fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let mb = Arc::new(Mailbox {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            open: true,
        }),
        wake: Notify::new(),
    });
    (Sender(mb.clone()), Receiver(mb))
}

impl<T> Sender<T> {
    /// Queue `item` for the task; `Err(item)` when the task has ended.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        {
            let mut st = self.0.lock();
            if !st.open {
                return Err(item);
            }
            st.items.push_back(item);
        }
        self.0.wake.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.0.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.0.wake.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next command; `None` once every sender is gone and nothing is left. Cancel-safe: a
    /// command is taken from the queue only when it is returned.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut st = self.0.lock();
                if let Some(item) = st.items.pop_front() {
                    if st.items.is_empty() {
                        // Give the slots back: an idle connection keeps no queue.
                        st.items = VecDeque::new();
                    }
                    return Some(item);
                }
                if st.senders == 0 {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a send between the look above
            // and this wait is not missed.
            self.0.wake.notified().await;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut st = self.0.lock();
            st.open = false;
            std::mem::take(&mut st.items)
        };
        // Dropped outside the lock: a command's drop may wake its waiting caller.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn commands_arrive_in_order_and_the_end_is_seen() {
        let (tx, mut rx) = mailbox();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert!(
            rx.recv().now_or_never().is_none(),
            "waits while a sender lives"
        );
        drop(tx);
        assert!(rx.recv().now_or_never().is_none(), "one sender is left");
        tx2.send(3).unwrap();
        drop(tx2);
        assert_eq!(
            rx.recv().await,
            Some(3),
            "what was queued is still delivered"
        );
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = mailbox();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send("hi").unwrap();
        assert_eq!(waiter.await.unwrap(), Some("hi"));
    }

    #[test]
    fn once_the_receiver_is_gone_sends_fail_and_queued_items_are_dropped() {
        let (tx, rx) = mailbox();
        let (reply, answer) = tokio::sync::oneshot::channel::<()>();
        tx.send(reply).unwrap();
        drop(rx);
        assert!(tx.send(tokio::sync::oneshot::channel().0).is_err());
        let mut answer = answer;
        assert!(
            answer.try_recv().is_err(),
            "the queued reply was dropped: its waiter hears"
        );
        assert!(matches!(
            answer.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }
}
