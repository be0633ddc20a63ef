//! The broker's state, apart from I/O: sessions, their subscriptions and queues, and the
//! byte budgets that make publishers wait instead of the broker dropping what it acknowledged.
//!
//! A message is counted against a session from when it is queued until the subscriber
//! acknowledges it (QoS 1) or it is written (QoS 0). **A QoS 1 message is queued for every
//! matching session or for none**: when one of them (or the broker as a whole) has no room,
//! [`Router::route`] refuses it and the publisher's connection waits, unacknowledged, until
//! room is made.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rumqttc::{Publish, QoS};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::topic;

/// Byte budgets and windows of the queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most bytes queued or in flight for one session.
    pub session_bytes: usize,
    /// Most bytes queued or in flight over all sessions.
    pub total_bytes: usize,
    /// Most QoS 1 messages sent to one subscriber and not yet acknowledged.
    pub max_inflight: usize,
}

/// A message as the broker keeps it for a subscriber.
#[derive(Debug, Clone)]
struct Queued {
    topic: Arc<str>,
    payload: Bytes,
    qos: QoS,
    /// Its packet id once sent at QoS 1: a resend keeps it and says DUP (MQTT-4.4.0-1).
    pkid: Option<u16>,
}

impl Queued {
    fn bytes(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscription {
    filter: String,
    /// The group of a shared subscription (`$share/{group}/{filter}`).
    group: Option<String>,
    qos: QoS,
}

struct Session {
    /// The live connection's id, `None` while the client is away.
    connection: Option<u64>,
    /// Cancelled to close the live connection (taken over, or its credential revoked).
    kick: CancellationToken,
    persistent: bool,
    subscriptions: Vec<Subscription>,
    queue: VecDeque<Queued>,
    inflight: HashMap<u16, Queued>,
    next_pkid: u16,
    bytes: usize,
    /// Wakes the connection's writer when there is something to send.
    wake: Arc<Notify>,
}

impl Session {
    fn new(persistent: bool) -> Self {
        Session {
            connection: None,
            kick: CancellationToken::new(),
            persistent,
            subscriptions: Vec::new(),
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            next_pkid: 1,
            bytes: 0,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The highest QoS among this session's non-shared subscriptions matching `topic`.
    fn direct_qos(&self, topic: &str) -> Option<QoS> {
        self.subscriptions
            .iter()
            .filter(|s| s.group.is_none() && topic::matches(&s.filter, topic))
            .map(|s| s.qos)
            .max_by_key(|q| *q as u8)
    }
}

/// A session in a shared subscription that matches a message.
struct ShareMember {
    session: String,
    qos: QoS,
    connected: bool,
}

/// What a new connection gets from [`Router::connect`].
pub struct Attached {
    pub connection: u64,
    pub session_present: bool,
    pub wake: Arc<Notify>,
    pub kick: CancellationToken,
    /// Bytes freed by forgetting an old session (publishers waiting for room must hear).
    pub freed: usize,
}

/// Why [`Router::route`] did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A matching session, or the broker, has no room: wait and try again.
    Full,
    /// The broker takes no more messages ([`Router::close`]).
    Closed,
}

/// Where a routed message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routed {
    pub sessions: usize,
    /// QoS 0 copies dropped for want of room (nobody acknowledged them).
    pub dropped_qos0: usize,
}

pub struct Router {
    limits: QueueLimits,
    sessions: HashMap<String, Session>,
    /// Usernames of the sessions, for closing a user's connections.
    owners: HashMap<String, String>,
    total_bytes: usize,
    next_connection: u64,
    /// Sessions with at least one subscription: the only ones a message can go to.
    subscribed: BTreeSet<String>,
    /// Set by [`Router::close`]: nothing is routed any more.
    closed: bool,
    /// Round-robin position per shared subscription (group, filter).
    share_turn: HashMap<(String, String), usize>,
}

impl Router {
    pub fn new(limits: QueueLimits) -> Self {
        Router {
            limits,
            sessions: HashMap::new(),
            owners: HashMap::new(),
            total_bytes: 0,
            next_connection: 1,
            subscribed: BTreeSet::new(),
            closed: false,
            share_turn: HashMap::new(),
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.total_bytes
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Takes no more messages: under the same lock as routing, so that no message can be
    /// acknowledged after the broker said it holds nothing more.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Attaches a connection to the session `client_id`, taking it over from a live one
    /// (which is kicked); a clean start forgets the old session.
    pub fn connect(&mut self, client_id: &str, username: &str, clean: bool) -> Attached {
        if let Some(old) = self.sessions.get(client_id) {
            old.kick.cancel();
        }
        let session_present = !clean && self.sessions.contains_key(client_id);
        let mut freed = 0;
        if !session_present {
            freed = self.forget(client_id);
            self.sessions
                .insert(client_id.to_owned(), Session::new(!clean));
        }
        self.owners
            .insert(client_id.to_owned(), username.to_owned());
        let connection = self.next_connection;
        self.next_connection += 1;
        let session = self.sessions.get_mut(client_id).expect("just inserted");
        session.connection = Some(connection);
        session.persistent = !clean;
        session.kick = CancellationToken::new();
        // Resent first, with their packet ids: what was in flight when the last connection
        // went.
        let mut resend: Vec<(u16, Queued)> = session.inflight.drain().collect();
        resend.sort_by_key(|(pkid, _)| *pkid);
        for (_, message) in resend.into_iter().rev() {
            session.queue.push_front(message);
        }
        session.wake.notify_one();
        Attached {
            connection,
            session_present,
            wake: session.wake.clone(),
            kick: session.kick.clone(),
            freed,
        }
    }

    /// The connection `connection` of `client_id` ended; a clean session ends with it.
    /// Returns the bytes that freed.
    pub fn disconnected(&mut self, client_id: &str, connection: u64) -> usize {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return 0;
        };
        if session.connection != Some(connection) {
            return 0; // taken over: the session lives on with its new connection
        }
        session.connection = None;
        if session.persistent {
            0
        } else {
            self.forget(client_id)
        }
    }

    /// Drops a session and what it held; returns the bytes freed.
    fn forget(&mut self, client_id: &str) -> usize {
        self.owners.remove(client_id);
        self.subscribed.remove(client_id);
        let Some(session) = self.sessions.remove(client_id) else {
            return 0;
        };
        self.total_bytes -= session.bytes;
        session.kick.cancel();
        session.bytes
    }

    /// The session of `client_id` if `connection` is its live connection: a connection
    /// that was taken over must not send or settle the new one's messages.
    fn live(&mut self, client_id: &str, connection: u64) -> Option<&mut Session> {
        self.sessions
            .get_mut(client_id)
            .filter(|s| s.connection == Some(connection))
    }

    /// Closes every connection of `username` (its credential was revoked or rotated).
    pub fn kick_user(&mut self, username: &str) -> usize {
        let mut kicked = 0;
        for (client_id, owner) in &self.owners {
            if owner == username {
                if let Some(s) = self.sessions.get(client_id) {
                    if s.connection.is_some() {
                        s.kick.cancel();
                        kicked += 1;
                    }
                }
            }
        }
        kicked
    }

    pub fn subscribe(&mut self, client_id: &str, filter: &str, qos: QoS) {
        let (group, filter) = match topic::shared(filter) {
            Some((group, filter)) => (Some(group.to_owned()), filter.to_owned()),
            None => (None, filter.to_owned()),
        };
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let qos = if qos == QoS::ExactlyOnce {
            QoS::AtLeastOnce
        } else {
            qos
        };
        session
            .subscriptions
            .retain(|s| !(s.filter == filter && s.group == group));
        session
            .subscriptions
            .push(Subscription { filter, group, qos });
        self.subscribed.insert(client_id.to_owned());
    }

    pub fn unsubscribe(&mut self, client_id: &str, filter: &str) {
        let (group, filter) = match topic::shared(filter) {
            Some((g, f)) => (Some(g), f),
            None => (None, filter),
        };
        if let Some(session) = self.sessions.get_mut(client_id) {
            session
                .subscriptions
                .retain(|s| !(s.filter == filter && s.group.as_deref() == group));
            if session.subscriptions.is_empty() {
                self.subscribed.remove(client_id);
            }
        }
    }

    /// Queues a published message for every session that should get it: each with a
    /// matching subscription, and one member (a connected one first, in turn) of each shared
    /// subscription that matches. QoS 1 copies go everywhere or nowhere ([`Refused::Full`]).
    pub fn route(
        &mut self,
        topic_name: &str,
        payload: &Bytes,
        qos: QoS,
    ) -> Result<Routed, Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        let subscribers = || {
            self.subscribed
                .iter()
                .filter_map(|id| self.sessions.get(id).map(|s| (id, s)))
        };
        let mut targets: Vec<(String, QoS)> = subscribers()
            .filter_map(|(id, s)| s.direct_qos(topic_name).map(|q| (id.clone(), q)))
            .collect();
        let mut groups: HashMap<(String, String), Vec<ShareMember>> = HashMap::new();
        for (id, s) in subscribers() {
            for sub in &s.subscriptions {
                if let Some(group) = &sub.group {
                    if topic::matches(&sub.filter, topic_name) {
                        groups
                            .entry((group.clone(), sub.filter.clone()))
                            .or_default()
                            .push(ShareMember {
                                session: id.clone(),
                                qos: sub.qos,
                                connected: s.connection.is_some(),
                            });
                    }
                }
            }
        }
        for (key, mut members) in groups {
            members.sort_by(|a, b| a.session.cmp(&b.session));
            let connected: Vec<&ShareMember> = members.iter().filter(|m| m.connected).collect();
            let pool: Vec<&ShareMember> = if connected.is_empty() {
                members.iter().collect()
            } else {
                connected
            };
            let turn = self.share_turn.entry(key).or_default();
            let chosen = pool[*turn % pool.len()];
            *turn = turn.wrapping_add(1);
            targets.push((chosen.session.clone(), chosen.qos));
        }
        let message_qos = |sub_qos: QoS| {
            if qos == QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                sub_qos
            }
        };
        let size = topic_name.len() + payload.len();
        let reliable: Vec<&String> = targets
            .iter()
            .filter(|(_, q)| message_qos(*q) != QoS::AtMostOnce)
            .map(|(id, _)| id)
            .collect();
        // An empty queue takes any message, so that none can wait for room forever.
        let room = |router: &Router, id: &str, extra_total: usize| {
            let s = &router.sessions[id];
            (s.bytes == 0 || s.bytes + size <= router.limits.session_bytes)
                && (router.total_bytes == 0
                    || router.total_bytes + extra_total <= router.limits.total_bytes)
        };
        if !reliable.is_empty() {
            let extra_total = size * reliable.len();
            if !reliable.iter().all(|id| room(self, id, extra_total)) {
                return Err(Refused::Full);
            }
        }
        let topic_arc: Arc<str> = Arc::from(topic_name);
        let mut routed = Routed::default();
        for (id, sub_qos) in targets {
            let q = message_qos(sub_qos);
            if q == QoS::AtMostOnce && !room(self, &id, size) {
                routed.dropped_qos0 += 1;
                continue;
            }
            let session = self.sessions.get_mut(&id).expect("target exists");
            session.queue.push_back(Queued {
                topic: topic_arc.clone(),
                payload: payload.clone(),
                qos: q,
                pkid: None,
            });
            session.bytes += size;
            self.total_bytes += size;
            session.wake.notify_one();
            routed.sessions += 1;
        }
        Ok(routed)
    }

    /// What the connection of `client_id` should write now: queued messages while its
    /// window has room (QoS 1 ones are numbered and held until acknowledged). Returns the
    /// bytes freed by QoS 0 messages, which are gone once written.
    pub fn take_outgoing(
        &mut self,
        client_id: &str,
        connection: u64,
        out: &mut Vec<Publish>,
    ) -> usize {
        let max_inflight = self.limits.max_inflight;
        let Some(session) = self.live(client_id, connection) else {
            return 0;
        };
        let mut freed = 0;
        while session.inflight.len() < max_inflight {
            let Some(mut message) = session.queue.pop_front() else {
                break;
            };
            let mut publish = Publish::from_bytes(
                message.topic.to_string(),
                message.qos,
                message.payload.clone(),
            );
            if message.qos == QoS::AtMostOnce {
                freed += message.bytes();
            } else {
                publish.dup = message.pkid.is_some();
                let pkid = match message.pkid {
                    Some(pkid) => pkid,
                    None => next_free_pkid(session),
                };
                publish.pkid = pkid;
                message.pkid = Some(pkid);
                session.inflight.insert(pkid, message);
            }
            out.push(publish);
        }
        session.bytes -= freed;
        self.total_bytes -= freed;
        freed
    }

    /// The subscriber acknowledged `pkid` on `connection`; returns the bytes freed.
    pub fn acked(&mut self, client_id: &str, connection: u64, pkid: u16) -> usize {
        let Some(session) = self.live(client_id, connection) else {
            return 0;
        };
        let Some(message) = session.inflight.remove(&pkid) else {
            return 0;
        };
        let freed = message.bytes();
        session.bytes -= freed;
        session.wake.notify_one();
        self.total_bytes -= freed;
        freed
    }
}

fn next_free_pkid(session: &mut Session) -> u16 {
    loop {
        let pkid = session.next_pkid;
        session.next_pkid = session.next_pkid.checked_add(1).unwrap_or(1);
        if !session.inflight.contains_key(&pkid) {
            return pkid;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits {
        session_bytes: 100,
        total_bytes: 150,
        max_inflight: 2,
    };
    const TOPIC: &str = "cleanfleet/v1/sweeper/sw-1/fixes"; // 32 bytes

    fn payload(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    /// The live connection of `client`.
    fn conn(router: &Router, client: &str) -> u64 {
        router.sessions[client].connection.expect("connected")
    }

    fn outgoing(router: &mut Router, client: &str) -> Vec<Publish> {
        let mut out = Vec::new();
        let connection = conn(router, client);
        router.take_outgoing(client, connection, &mut out);
        out
    }

    #[test]
    fn a_full_session_refuses_instead_of_dropping_and_takes_again_when_acked() {
        let mut router = Router::new(LIMITS);
        router.connect("cleanfleet-ingest", "cleanfleet-ingest", false);
        router.subscribe("cleanfleet-ingest", "cleanfleet/v1/#", QoS::AtLeastOnce);
        // 32 + 18 = 50 bytes each: two fit the session's 100.
        for _ in 0..2 {
            assert_eq!(
                router
                    .route(TOPIC, &payload(18), QoS::AtLeastOnce)
                    .unwrap()
                    .sessions,
                1
            );
        }
        assert_eq!(
            router.route(TOPIC, &payload(18), QoS::AtLeastOnce),
            Err(Refused::Full)
        );
        // Sent is not enough: only an acknowledgement makes room.
        let sent = outgoing(&mut router, "cleanfleet-ingest");
        assert_eq!(sent.len(), 2);
        assert_eq!(
            router.route(TOPIC, &payload(18), QoS::AtLeastOnce),
            Err(Refused::Full)
        );
        let ingest = conn(&router, "cleanfleet-ingest");
        assert_eq!(router.acked("cleanfleet-ingest", ingest, sent[0].pkid), 50);
        assert!(router.route(TOPIC, &payload(18), QoS::AtLeastOnce).is_ok());
        assert_eq!(router.queued_bytes(), 100);
    }

    #[test]
    fn an_offline_persistent_session_keeps_its_messages_and_gets_in_flight_ones_again() {
        let mut router = Router::new(LIMITS);
        let first = router.connect("ing", "cleanfleet-ingest", false);
        router.subscribe("ing", "cleanfleet/v1/#", QoS::AtLeastOnce);
        router.route(TOPIC, &payload(1), QoS::AtLeastOnce).unwrap();
        let sent = outgoing(&mut router, "ing");
        assert_eq!(sent.len(), 1);
        router.disconnected("ing", first.connection);
        router.route(TOPIC, &payload(2), QoS::AtLeastOnce).unwrap();
        let again = router.connect("ing", "cleanfleet-ingest", false);
        assert!(again.session_present);
        let resent = outgoing(&mut router, "ing");
        let sizes: Vec<usize> = resent.iter().map(|p| p.payload.len()).collect();
        assert_eq!(sizes, [1, 2], "unacknowledged first, then the queue");
        // A clean start forgets it all.
        let clean = router.connect("ing", "cleanfleet-ingest", true);
        assert!(!clean.session_present);
        assert_eq!(router.queued_bytes(), 0);
        assert!(outgoing(&mut router, "ing").is_empty());
    }

    #[test]
    fn a_taken_over_connection_is_kicked_and_its_end_does_not_end_the_session() {
        let mut router = Router::new(LIMITS);
        let first = router.connect("sw-1", "sw-1", true);
        let second = router.connect("sw-1", "sw-1", true);
        assert!(first.kick.is_cancelled());
        assert!(!second.kick.is_cancelled());
        router.disconnected("sw-1", first.connection);
        assert_eq!(router.sessions(), 1);
        router.disconnected("sw-1", second.connection);
        assert_eq!(router.sessions(), 0);
        let third = router.connect("sw-1", "sw-1", false);
        assert_eq!(router.kick_user("sw-1"), 1);
        assert!(third.kick.is_cancelled());
    }

    #[test]
    fn a_shared_subscription_gives_each_message_to_one_member_in_turn() {
        let mut router = Router::new(QueueLimits {
            session_bytes: 10_000,
            total_bytes: 10_000,
            max_inflight: 100,
        });
        for id in ["a", "b"] {
            router.connect(id, "cleanfleet-ingest", false);
            router.subscribe(id, "$share/cleanfleet/cleanfleet/v1/#", QoS::AtLeastOnce);
        }
        for _ in 0..4 {
            assert_eq!(
                router
                    .route(TOPIC, &payload(1), QoS::AtLeastOnce)
                    .unwrap()
                    .sessions,
                1
            );
        }
        assert_eq!(outgoing(&mut router, "a").len(), 2);
        assert_eq!(outgoing(&mut router, "b").len(), 2);
        router.unsubscribe("a", "$share/cleanfleet/cleanfleet/v1/#");
        router.route(TOPIC, &payload(1), QoS::AtLeastOnce).unwrap();
        assert_eq!(outgoing(&mut router, "b").len(), 1);
    }

    #[test]
    fn qos0_copies_are_dropped_when_full_but_never_block() {
        let mut router = Router::new(LIMITS);
        router.connect("ing", "cleanfleet-ingest", false);
        router.subscribe("ing", "cleanfleet/v1/#", QoS::AtLeastOnce);
        router.route(TOPIC, &payload(60), QoS::AtLeastOnce).unwrap();
        let routed = router.route(TOPIC, &payload(60), QoS::AtMostOnce).unwrap();
        assert_eq!(
            routed,
            Routed {
                sessions: 0,
                dropped_qos0: 1
            }
        );
        // Nobody subscribed: nowhere to go, and nothing refused.
        assert_eq!(
            router
                .route("other/topic", &payload(1), QoS::AtLeastOnce)
                .unwrap(),
            Routed::default()
        );
    }

    #[test]
    fn the_total_budget_holds_across_sessions() {
        let mut router = Router::new(LIMITS);
        for id in ["a", "b"] {
            router.connect(id, "cleanfleet-ingest", false);
            router.subscribe(id, "cleanfleet/v1/#", QoS::AtLeastOnce);
        }
        // 50 bytes to each of two sessions: 100 of the 150 total.
        router.route(TOPIC, &payload(18), QoS::AtLeastOnce).unwrap();
        assert_eq!(
            router.route(TOPIC, &payload(18), QoS::AtLeastOnce),
            Err(Refused::Full)
        );
        assert_eq!(router.queued_bytes(), 100);
    }

    #[test]
    fn a_taken_over_connection_neither_sends_nor_settles_the_new_ones_messages() {
        let mut router = Router::new(LIMITS);
        let old = router.connect("ing", "cleanfleet-ingest", false);
        router.subscribe("ing", "cleanfleet/v1/#", QoS::AtLeastOnce);
        router.route(TOPIC, &payload(1), QoS::AtLeastOnce).unwrap();
        let first = outgoing(&mut router, "ing");
        let new = router.connect("ing", "cleanfleet-ingest", false);
        // The old connection's task, not yet gone, tries to send and to settle.
        let mut stale = Vec::new();
        assert_eq!(router.take_outgoing("ing", old.connection, &mut stale), 0);
        assert!(stale.is_empty());
        assert_eq!(router.acked("ing", old.connection, first[0].pkid), 0);
        // The new connection gets it again, same packet id, marked DUP.
        let resent = outgoing(&mut router, "ing");
        assert_eq!(resent.len(), 1);
        assert!(resent[0].dup && resent[0].pkid == first[0].pkid);
        assert_eq!(router.acked("ing", new.connection, resent[0].pkid), 33);
        assert_eq!(router.queued_bytes(), 0);
    }

    #[test]
    fn a_closed_router_takes_nothing() {
        let mut router = Router::new(LIMITS);
        router.connect("ing", "cleanfleet-ingest", false);
        router.subscribe("ing", "cleanfleet/v1/#", QoS::AtLeastOnce);
        router.close();
        assert_eq!(
            router.route(TOPIC, &payload(1), QoS::AtLeastOnce),
            Err(Refused::Closed)
        );
        assert_eq!(router.queued_bytes(), 0);
    }

    #[test]
    fn a_forgotten_session_says_what_it_freed_and_an_empty_queue_takes_any_message() {
        let mut router = Router::new(LIMITS);
        let clean = router.connect("dbg", "cleanfleet-ingest", true);
        router.subscribe("dbg", "cleanfleet/v1/#", QoS::AtLeastOnce);
        // Larger than the session's budget, but the queue is empty: taken.
        router.route(TOPIC, &payload(90), QoS::AtLeastOnce).unwrap();
        assert_eq!(router.disconnected("dbg", clean.connection), 122);
        assert_eq!(router.queued_bytes(), 0);
        // Taken over with a persistent session, a clean one becomes persistent.
        let first = router.connect("ing", "cleanfleet-ingest", true);
        let again = router.connect("ing", "cleanfleet-ingest", false);
        router.disconnected("ing", first.connection);
        router.disconnected("ing", again.connection);
        assert_eq!(router.sessions(), 1, "the persistent session is kept");
    }
}
