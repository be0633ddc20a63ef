//! A vehicle's cellular link: drop-outs that buffer its messages and replay them late and out
//! of order, and retransmitted (duplicate) fix batches.

use jiff::{SignedDuration, Timestamp};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::truth::OfflinePeriod;
use super::{Content, SimMessage};
use crate::config::FaultConfig;

pub(super) struct Uplink {
    device: usize,
    rng: ChaCha8Rng,
    /// Chance per tick of a drop-out starting.
    offline_chance: f64,
    offline_duration: SignedDuration,
    duplicate_rate: f64,
    /// The current drop-out: (since, until).
    offline: Option<(Timestamp, Timestamp)>,
    buffer: Vec<SimMessage>,
}

impl Uplink {
    pub fn new(
        device: usize,
        rng: ChaCha8Rng,
        faults: &FaultConfig,
        tick: SignedDuration,
    ) -> Uplink {
        Uplink {
            device,
            rng,
            offline_chance: (faults.offline_rate_per_hour * tick.as_secs_f64() / 3600.0).min(1.0),
            offline_duration: SignedDuration::from_secs_f64(faults.offline_duration_s),
            duplicate_rate: faults.duplicate_rate,
            offline: None,
            buffer: Vec::new(),
        }
    }

    /// At the start of a tick: reconnects after a drop-out (replaying the buffer) or drops
    /// out. Returns a finished drop-out.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<SimMessage>) -> Option<OfflinePeriod> {
        if let Some((_, until)) = self.offline {
            if now >= until {
                return self.reconnect(now, out);
            }
            return None;
        }
        if self.offline_chance > 0.0 && self.rng.random_bool(self.offline_chance) {
            self.offline = Some((now, now + self.offline_duration));
        }
        None
    }

    /// Sends `m`, or buffers it while offline.
    pub fn send(&mut self, m: SimMessage, out: &mut Vec<SimMessage>) {
        if self.offline.is_some() {
            self.buffer.push(m);
        } else {
            self.emit(m, out);
        }
    }

    /// Ends a drop-out early (the simulation stops) so that nothing buffered is lost.
    pub fn flush(&mut self, now: Timestamp, out: &mut Vec<SimMessage>) -> Option<OfflinePeriod> {
        if self.offline.is_some() {
            self.reconnect(now, out)
        } else {
            None
        }
    }

    fn reconnect(&mut self, now: Timestamp, out: &mut Vec<SimMessage>) -> Option<OfflinePeriod> {
        let (from, _) = self.offline.take()?;
        let mut buffered = std::mem::take(&mut self.buffer);
        buffered.shuffle(&mut self.rng);
        for mut m in buffered {
            m.time = now;
            self.emit(m, out);
        }
        Some(OfflinePeriod {
            device: self.device,
            from,
            until: now,
        })
    }

    fn emit(&mut self, m: SimMessage, out: &mut Vec<SimMessage>) {
        let resend = matches!(m.content, Content::Fixes(_))
            && self.duplicate_rate > 0.0
            && self.rng.random_bool(self.duplicate_rate);
        if resend {
            out.push(m.clone());
        }
        out.push(m);
    }
}
