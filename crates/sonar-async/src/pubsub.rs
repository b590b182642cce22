//! Topics: publish one prepared message to every connection subscribed to a topic, with a
//! backpressure limit per subscriber, without ever waiting on one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sonar_core::{CloseCode, PreparedMessage};

use crate::conn::WriteWhen;
use crate::socket::{Offer, WsWriter};
use crate::sync::{Mutex, lock};

/// What [`Topics::publish`] does with a subscriber whose unsent bytes would pass the
/// backpressure limit with the message (uWebSockets' `closeOnBackpressureLimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OnBackpressure {
    /// Skip this message for that subscriber; it stays subscribed and gets later messages
    /// once it has caught up.
    #[default]
    Skip,
    /// Close the subscriber's connection with 1008 (policy violation) and unsubscribe it
    /// from every topic. Its closing handshake waits behind what is already queued, bounded by
    /// the close timeout.
    Close,
}

/// Counts of [`Topics::publish`] since the topics were created (every topic together).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TopicStats {
    /// Messages queued to a subscriber.
    pub delivered: u64,
    /// Messages not queued to a subscriber over the backpressure limit
    /// ([`OnBackpressure::Skip`]).
    pub skipped: u64,
    /// Subscribers closed for backpressure ([`OnBackpressure::Close`]).
    pub closed_for_backpressure: u64,
}

/// What one [`Topics::publish`] did.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// Subscribers the message was queued to.
    pub delivered: usize,
    /// Subscribers over the backpressure limit that were skipped.
    pub skipped: usize,
    /// Subscribers over the backpressure limit that were closed with 1008.
    pub closed: usize,
    /// Subscribers whose connection had closed; they were unsubscribed.
    pub gone: usize,
}

/// A small pub/sub for fan-out (runtime-agnostic): named topics, each a set of connections'
/// writers; [`publish`](Self::publish) queues a [`PreparedMessage`] to every subscriber of a
/// topic, so the message is framed (and compressed, per compressor settings without context
/// takeover) once for all of them.
///
/// Publishing never waits: each subscriber's message is queued, and the connection's keeper
/// (woken once) writes everything published to it before it runs in one write, or the
/// publish itself writes once 16 KiB are queued; so a burst of publishes costs one system
/// call per subscriber, not one per message. A subscriber whose
/// unsent bytes would pass `max_backpressure` with the message is skipped for that message,
/// or closed with 1008, as [`OnBackpressure`] says; so a subscriber that never reads holds
/// at most `max_backpressure` bytes (plus its connection's write buffer), and the others
/// never wait for it.
///
/// A subscription holds a clone of the connection's [`WsWriter`]. It ends with
/// [`unsubscribe`](Self::unsubscribe) or [`unsubscribe_all`](Self::unsubscribe_all), when the
/// subscriber is closed for backpressure, or at the first publish after its connection
/// closed. `Topics` is cheap to clone (all clones share the topics) and can be used from any
/// thread.
///
/// ```no_run
/// use sonar_async::{OnBackpressure, PreparedMessage, Topics, WebSocket};
/// # async fn demo(ws: WebSocket, topics: Topics) {
/// let topics = Topics::new(256 * 1024, OnBackpressure::Skip);
/// let (mut reader, writer) = ws.into_split();
/// topics.subscribe("ticks", &writer);
/// // Elsewhere, for every event:
/// let delivery = topics.publish("ticks", &PreparedMessage::new("tick 1"));
/// println!("queued to {} subscribers", delivery.delivered);
/// // When the connection's reader ends, leave every topic.
/// while let Some(Ok(_)) = reader.recv().await {}
/// topics.unsubscribe_all(&writer);
/// # }
/// ```
#[derive(Clone)]
pub struct Topics {
    shared: Arc<Shared>,
}

struct Shared {
    max_backpressure: usize,
    on_backpressure: OnBackpressure,
    /// Each topic's subscribers; `publish` clones the `Arc` and works on that snapshot, so
    /// (un)subscribing never waits for a publish (it copies the list only while one runs).
    topics: Mutex<HashMap<String, Arc<Vec<WsWriter>>>>,
    delivered: AtomicU64,
    skipped: AtomicU64,
    closed: AtomicU64,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("max_backpressure", &self.shared.max_backpressure)
            .field("on_backpressure", &self.shared.on_backpressure)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Topics {
    /// No topics yet; a subscriber may have at most `max_backpressure` unsent bytes (frame
    /// headers included) after a message is queued to it.
    pub fn new(max_backpressure: usize, on_backpressure: OnBackpressure) -> Self {
        Topics {
            shared: Arc::new(Shared {
                max_backpressure,
                on_backpressure,
                topics: Mutex::new(HashMap::new()),
                delivered: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                closed: AtomicU64::new(0),
            }),
        }
    }

    /// Subscribes `writer`'s connection to `topic`; `false` if it already was.
    pub fn subscribe(&self, topic: &str, writer: &WsWriter) -> bool {
        let mut topics = lock(&self.shared.topics);
        let subscribers = Arc::make_mut(topics.entry(topic.to_owned()).or_default());
        if subscribers.iter().any(|w| w.same_connection(writer)) {
            return false;
        }
        subscribers.push(writer.clone());
        true
    }

    /// Unsubscribes `writer`'s connection from `topic`; `false` if it was not subscribed.
    pub fn unsubscribe(&self, topic: &str, writer: &WsWriter) -> bool {
        let mut topics = lock(&self.shared.topics);
        let Some(entry) = topics.get_mut(topic) else {
            return false;
        };
        let Some(i) = entry.iter().position(|w| w.same_connection(writer)) else {
            return false;
        };
        Arc::make_mut(entry).swap_remove(i);
        if entry.is_empty() {
            topics.remove(topic);
        }
        true
    }

    /// Unsubscribes `writer`'s connection from every topic; returns how many it left.
    pub fn unsubscribe_all(&self, writer: &WsWriter) -> usize {
        self.remove_where(|w| w.same_connection(writer))
    }

    /// The number of subscribers of `topic`.
    pub fn subscribers(&self, topic: &str) -> usize {
        lock(&self.shared.topics).get(topic).map_or(0, |s| s.len())
    }

    /// Counts of every publish so far.
    pub fn stats(&self) -> TopicStats {
        let s = &self.shared;
        TopicStats {
            delivered: s.delivered.load(Ordering::Relaxed),
            skipped: s.skipped.load(Ordering::Relaxed),
            closed_for_backpressure: s.closed.load(Ordering::Relaxed),
        }
    }

    /// Queues `message` to every subscriber of `topic` (a topic nobody subscribed to delivers
    /// to nobody). Never waits; see the type's documentation for the backpressure policy.
    pub fn publish(&self, topic: &str, message: &PreparedMessage) -> Delivery {
        let Some(subscribers) = lock(&self.shared.topics).get(topic).cloned() else {
            return Delivery::default();
        };
        let mut delivery = Delivery::default();
        let mut leaving: Vec<&WsWriter> = Vec::new();
        for writer in subscribers.iter() {
            match writer.offer(message, self.shared.max_backpressure, WriteWhen::Batched) {
                Offer::Queued => delivery.delivered += 1,
                Offer::Full => match self.shared.on_backpressure {
                    OnBackpressure::Skip => delivery.skipped += 1,
                    OnBackpressure::Close => {
                        writer.start_close(CloseCode::POLICY, "subscriber too slow");
                        delivery.closed += 1;
                        leaving.push(writer);
                    }
                },
                Offer::Closed(_) => {
                    delivery.gone += 1;
                    leaving.push(writer);
                }
            }
        }
        if !leaving.is_empty() {
            self.remove_where(|w| leaving.iter().any(|l| l.same_connection(w)));
        }
        let s = &self.shared;
        s.delivered
            .fetch_add(delivery.delivered as u64, Ordering::Relaxed);
        s.skipped
            .fetch_add(delivery.skipped as u64, Ordering::Relaxed);
        s.closed
            .fetch_add(delivery.closed as u64, Ordering::Relaxed);
        delivery
    }

    /// Removes every subscription whose writer matches; returns how many were removed.
    fn remove_where(&self, matches: impl Fn(&WsWriter) -> bool) -> usize {
        let mut topics = lock(&self.shared.topics);
        let mut removed = 0;
        topics.retain(|_, subscribers| {
            if subscribers.iter().any(&matches) {
                let list = Arc::make_mut(subscribers);
                let before = list.len();
                list.retain(|w| !matches(w));
                removed += before - list.len();
            }
            !subscribers.is_empty()
        });
        removed
    }
}
