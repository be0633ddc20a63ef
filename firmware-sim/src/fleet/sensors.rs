//! Fixed devices: smart bins, public toilets and transfer-station weighbridges.

use std::f64::consts::PI;

use cleanfleet_model::{BinReading, ToiletReading, WeighbridgeTicket};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::truth::{BinFault, BinFaultKind, Collection};
use super::{gaussian, message, round_to, Content, Identity, SimMessage};
use crate::config::FaultConfig;

/// Vendors report at once when a bin crosses this fill (DOMAIN.md uses 0.8 or 0.9).
const FULL_ALERT_RATIO: f64 = 0.8;
/// A collected bin keeps a little residue.
const RESIDUE_RATIO: (f64, f64) = (0.02, 0.08);
/// About one bin fire per bin per 30 days.
const FIRE_PER_HOUR: f64 = 1.0 / (30.0 * 24.0);
const FIRE_MIN: (f64, f64) = (10.0, 30.0);
const FIRE_C: (f64, f64) = (60.0, 95.0);
/// Bin battery drain.
const BATTERY_PER_DAY: f64 = 0.002;
const STUCK_H: (f64, f64) = (6.0, 48.0);
const TILT_H: (f64, f64) = (1.0, 6.0);
const LOW_BATTERY_RATIO: (f64, f64) = (0.03, 0.15);

/// A sensor fault in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Reports this fill whatever the bin holds.
    Stuck {
        fill_ratio: f64,
        until: Timestamp,
    },
    Tilted {
        until: Timestamp,
    },
}

/// How busy the streets are at a local hour, 0.2 at night to 1.5 at midday.
fn daytime_factor(local_hour: f64) -> f64 {
    if (6.0..22.0).contains(&local_hour) {
        0.2 + 1.3 * (PI * (local_hour - 6.0) / 16.0).sin()
    } else {
        0.2
    }
}

fn ambient_c(local_hour: f64) -> f64 {
    // Warmest mid-afternoon.
    18.0 + 6.0 * (2.0 * PI * (local_hour - 9.0) / 24.0).sin()
}

/// Periodic reporting with internal sampling in between.
struct Schedule {
    last_sample: Timestamp,
    next_report: Timestamp,
    sample_interval: SignedDuration,
}

impl Schedule {
    /// Reports are spread over the interval so devices do not all speak at once.
    fn new(
        rng: &mut ChaCha8Rng,
        start: Timestamp,
        sample: SignedDuration,
        report: SignedDuration,
    ) -> Schedule {
        let phase = SignedDuration::from_secs_f64(rng.random::<f64>() * report.as_secs_f64());
        Schedule {
            last_sample: start,
            next_report: start + phase,
            sample_interval: sample,
        }
    }

    /// Hours since the last sample when a sample is due.
    fn sample(&mut self, now: Timestamp) -> Option<f64> {
        let elapsed = now.duration_since(self.last_sample);
        if elapsed < self.sample_interval {
            return None;
        }
        self.last_sample = now;
        Some(elapsed.as_secs_f64() / 3600.0)
    }

    fn report_due(&mut self, now: Timestamp, interval: SignedDuration) -> bool {
        if now < self.next_report {
            return false;
        }
        while self.next_report <= now {
            self.next_report += interval;
        }
        true
    }
}

pub(super) struct Bin {
    device: usize,
    id: String,
    topic: String,
    rng: ChaCha8Rng,
    node: u32,
    schedule: Schedule,
    fill_ratio: f64,
    fill_per_hour: f64,
    battery_ratio: f64,
    temperature_c: f64,
    fire_until: Option<Timestamp>,
    /// Fill when last reported, to report a crossing of the alert level at once.
    reported_fill: f64,
    /// Collected since the last report: the sharp drop is reported at once.
    collected: bool,
    /// A truck is on its way.
    claimed: bool,
    seq: u64,
    skew: SignedDuration,
    /// Collections not yet taken into the ground truth.
    collections: Vec<Collection>,
    fault_rng: ChaCha8Rng,
    stuck_per_hour: f64,
    tilt_per_hour: f64,
    fault: Option<Fault>,
    /// Faults not yet taken into the ground truth; an open one has no end yet.
    faults: Vec<BinFault>,
}

impl Bin {
    pub fn new(
        identity: Identity,
        node: u32,
        start: Timestamp,
        (sample, report): (SignedDuration, SignedDuration),
        faults: &FaultConfig,
    ) -> Bin {
        let Identity {
            device,
            id,
            topic,
            mut rng,
            mut fault_rng,
            skew,
        } = identity;
        let fill_ratio = rng.random_range(0.05..0.9);
        let mut battery_ratio = rng.random_range(0.5..1.0);
        let mut bin_faults = Vec::new();
        if faults.bin_low_battery_ratio > 0.0 && fault_rng.random_bool(faults.bin_low_battery_ratio)
        {
            battery_ratio = fault_rng.random_range(LOW_BATTERY_RATIO.0..LOW_BATTERY_RATIO.1);
            bin_faults.push(BinFault {
                device,
                fault: BinFaultKind::LowBattery,
                from: start,
                until: None,
            });
        }
        Bin {
            device,
            id,
            topic,
            node,
            schedule: Schedule::new(&mut rng, start, sample, report),
            fill_ratio,
            // Busy corners fill in a few hours, quiet ones over days.
            fill_per_hour: rng.random_range(0.02..0.2),
            battery_ratio,
            temperature_c: 20.0,
            fire_until: None,
            reported_fill: fill_ratio,
            collected: false,
            claimed: false,
            seq: 0,
            skew,
            collections: Vec::new(),
            rng,
            fault_rng,
            stuck_per_hour: faults.bin_stuck_per_day / 24.0,
            tilt_per_hour: faults.bin_tilt_per_day / 24.0,
            fault: None,
            faults: bin_faults,
        }
    }

    /// Faults begun or ended since the last call (an ongoing one once, with no end).
    pub fn take_faults(&mut self) -> Vec<BinFault> {
        std::mem::take(&mut self.faults)
    }

    /// Starts or ends sensor faults over `hours` up to `now`.
    fn update_fault(&mut self, now: Timestamp, hours: f64) {
        let ended = match self.fault {
            Some(Fault::Stuck { until, .. } | Fault::Tilted { until }) => now >= until,
            None => false,
        };
        if ended {
            self.fault = None;
        }
        if self.fault.is_some() {
            return;
        }
        let hours_between = |rng: &mut ChaCha8Rng, (low, high): (f64, f64)| {
            now + SignedDuration::from_secs_f64(rng.random_range(low..high) * 3600.0)
        };
        let chance = |rate: f64| (rate * hours).min(1.0);
        let (fault, kind, until) = if self.stuck_per_hour > 0.0
            && self.fault_rng.random_bool(chance(self.stuck_per_hour))
        {
            let until = hours_between(&mut self.fault_rng, STUCK_H);
            let fill_ratio = self.reported_fill;
            (
                Fault::Stuck { fill_ratio, until },
                BinFaultKind::StuckSensor,
                until,
            )
        } else if self.tilt_per_hour > 0.0 && self.fault_rng.random_bool(chance(self.tilt_per_hour))
        {
            let until = hours_between(&mut self.fault_rng, TILT_H);
            (Fault::Tilted { until }, BinFaultKind::Tilt, until)
        } else {
            return;
        };
        self.fault = Some(fault);
        self.faults.push(BinFault {
            device: self.device,
            fault: kind,
            from: now,
            until: Some(until),
        });
    }

    pub fn device(&self) -> usize {
        self.device
    }

    /// When the fill last changed.
    pub fn last_sample(&self) -> Timestamp {
        self.schedule.last_sample
    }

    /// Collections since the last call.
    pub fn take_collections(&mut self) -> Vec<Collection> {
        std::mem::take(&mut self.collections)
    }

    pub fn node(&self) -> u32 {
        self.node
    }

    pub fn fill_ratio(&self) -> f64 {
        self.fill_ratio
    }

    pub fn is_claimed(&self) -> bool {
        self.claimed
    }

    pub fn claim(&mut self) {
        self.claimed = true;
    }

    /// Truck `truck` (a device index) empties the bin; returns the fill it took.
    pub fn collect(&mut self, now: Timestamp, truck: usize) -> f64 {
        let taken = self.fill_ratio;
        self.fill_ratio = self.rng.random_range(RESIDUE_RATIO.0..RESIDUE_RATIO.1);
        self.collections.push(Collection {
            device: self.device,
            truck,
            time: now,
            fill_ratio: taken,
            residue_ratio: self.fill_ratio,
        });
        self.collected = true;
        self.claimed = false;
        self.schedule.last_sample = now;
        taken
    }

    pub fn step(
        &mut self,
        now: Timestamp,
        local_hour: f64,
        report: SignedDuration,
    ) -> Option<SimMessage> {
        let mut urgent = std::mem::take(&mut self.collected);
        if let Some(hours) = self.schedule.sample(now) {
            self.fill_ratio = (self.fill_ratio
                + self.fill_per_hour * daytime_factor(local_hour) * hours)
                .min(1.0);
            self.battery_ratio = (self.battery_ratio - BATTERY_PER_DAY * hours / 24.0).max(0.0);
            if self.fire_until.is_some_and(|t| now >= t) {
                self.fire_until = None;
            }
            if self.fire_until.is_none() && self.rng.random_bool((FIRE_PER_HOUR * hours).min(1.0)) {
                let minutes = self.rng.random_range(FIRE_MIN.0..FIRE_MIN.1);
                self.fire_until = Some(now + SignedDuration::from_secs_f64(minutes * 60.0));
                urgent = true;
            }
            self.temperature_c = if self.fire_until.is_some() {
                self.rng.random_range(FIRE_C.0..FIRE_C.1)
            } else {
                ambient_c(local_hour) + 0.3 * gaussian(&mut self.rng)
            };
            urgent |= self.reported_fill < FULL_ALERT_RATIO && self.fill_ratio >= FULL_ALERT_RATIO;
            self.update_fault(now, hours);
        }
        let due = self.schedule.report_due(now, report);
        if !(urgent || due) {
            return None;
        }
        self.reported_fill = self.fill_ratio;
        self.seq += 1;
        let tilted = matches!(self.fault, Some(Fault::Tilted { .. }));
        let sensed_fill = match self.fault {
            Some(Fault::Stuck { fill_ratio, .. }) => fill_ratio,
            // The ultrasonic sensor looks sideways into the street.
            Some(Fault::Tilted { .. }) => self.fault_rng.random_range(0.0..1.0),
            None => self.fill_ratio,
        };
        let reading = BinReading {
            device_id: Some(self.id.clone()),
            time: now + self.skew,
            seq: Some(self.seq),
            fill_ratio: round_to(sensed_fill, 3),
            temperature_c: Some(round_to(self.temperature_c, 1)),
            tilted: Some(tilted),
            // An overflowing bin cannot close.
            lid_open: Some(self.fill_ratio >= 0.98),
            battery_ratio: Some(round_to(self.battery_ratio, 3)),
        };
        Some(message(
            self.device,
            &self.topic,
            &reading,
            now,
            Content::Reading,
        ))
    }
}

/// Minutes a visitor stays.
const VISIT_MIN: f64 = 4.5;
/// Visitors per minute at the busiest hour.
const PEAK_VISITORS_PER_MIN: f64 = 0.8;
/// Minutes for the air to follow a change in use.
const AIR_LAG_MIN: f64 = 10.0;
const FLUSH_M3: f64 = 0.006;
/// Lights and fans.
const BASE_POWER_KW: f64 = 0.5;

pub(super) struct Toilet {
    device: usize,
    id: String,
    topic: String,
    rng: ChaCha8Rng,
    schedule: Schedule,
    occupancy: u32,
    footfall: u32,
    nh3_mg_m3: f64,
    h2s_mg_m3: f64,
    water_m3: f64,
    power_kwh: f64,
    seq: u64,
    skew: SignedDuration,
}

impl Toilet {
    pub fn new(
        identity: Identity,
        start: Timestamp,
        sample: SignedDuration,
        report: SignedDuration,
    ) -> Toilet {
        let Identity {
            device,
            id,
            topic,
            mut rng,
            skew,
            ..
        } = identity;
        Toilet {
            device,
            id,
            topic,
            schedule: Schedule::new(&mut rng, start, sample, report),
            occupancy: 0,
            footfall: 0,
            nh3_mg_m3: 0.1,
            h2s_mg_m3: 0.003,
            water_m3: round_to(rng.random_range(100.0..5000.0), 3),
            power_kwh: round_to(rng.random_range(1000.0..50_000.0), 1),
            seq: 0,
            skew,
            rng,
        }
    }

    pub fn step(
        &mut self,
        now: Timestamp,
        local_hour: f64,
        report: SignedDuration,
    ) -> Option<SimMessage> {
        if let Some(hours) = self.schedule.sample(now) {
            let minutes = hours * 60.0;
            let leave_chance = (minutes / VISIT_MIN).min(1.0);
            let left = (0..self.occupancy)
                .filter(|_| self.rng.random_bool(leave_chance))
                .count() as u32;
            let rate = PEAK_VISITORS_PER_MIN * daytime_factor(local_hour) / 1.5;
            let arrived = poisson(&mut self.rng, rate * minutes);
            self.occupancy = self.occupancy - left + arrived;
            self.footfall += arrived;
            self.water_m3 += FLUSH_M3 * f64::from(left);
            self.power_kwh += BASE_POWER_KW * hours;
            // Ammonia and hydrogen sulphide follow use with a lag; at three or more people
            // they pass the class-2 NH3 limit (1 mg/m³) and the H2S limit (0.01 mg/m³).
            let occupancy = f64::from(self.occupancy);
            let nh3_target = 0.08 + 0.3 * occupancy;
            let h2s_target = 0.002 + 0.003 * occupancy;
            let follow = (minutes / AIR_LAG_MIN).min(1.0);
            self.nh3_mg_m3 += (nh3_target - self.nh3_mg_m3) * follow;
            self.h2s_mg_m3 += (h2s_target - self.h2s_mg_m3) * follow;
        }
        if !self.schedule.report_due(now, report) {
            return None;
        }
        self.seq += 1;
        let noise = 1.0 + 0.05 * gaussian(&mut self.rng);
        let reading = ToiletReading {
            device_id: Some(self.id.clone()),
            time: now + self.skew,
            seq: Some(self.seq),
            nh3_mg_m3: Some(round_to((self.nh3_mg_m3 * noise).max(0.0), 3)),
            h2s_mg_m3: Some(round_to((self.h2s_mg_m3 * noise).max(0.0), 4)),
            occupancy: Some(self.occupancy),
            footfall: Some(std::mem::take(&mut self.footfall)),
            water_m3: Some(round_to(self.water_m3, 3)),
            power_kwh: Some(round_to(self.power_kwh, 1)),
        };
        Some(message(
            self.device,
            &self.topic,
            &reading,
            now,
            Content::Reading,
        ))
    }
}

/// A Poisson sample by Knuth's method; fine for the small means used here.
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

pub(super) struct Weighbridge {
    device: usize,
    id: String,
    topic: String,
    node: u32,
    tickets: u64,
    skew: SignedDuration,
}

impl Weighbridge {
    pub fn new(identity: Identity, node: u32) -> Weighbridge {
        Weighbridge {
            device: identity.device,
            id: identity.id,
            topic: identity.topic,
            node,
            tickets: 0,
            skew: identity.skew,
        }
    }

    pub fn node(&self) -> u32 {
        self.node
    }

    /// Weighs a truck in and out.
    pub fn ticket(
        &mut self,
        vehicle_id: &str,
        time_in: Timestamp,
        time_out: Timestamp,
        tare_kg: f64,
        load_kg: f64,
    ) -> SimMessage {
        self.tickets += 1;
        // Weighbridges resolve 10 kg.
        let gross_kg = round_to(tare_kg + load_kg, -1);
        let ticket = WeighbridgeTicket {
            device_id: Some(self.id.clone()),
            ticket_id: format!("{}-{:06}", self.id, self.tickets),
            vehicle_id: vehicle_id.to_owned(),
            time_in: time_in + self.skew,
            time_out: time_out + self.skew,
            gross_kg,
            tare_kg,
            net_kg: gross_kg - tare_kg,
        };
        message(self.device, &self.topic, &ticket, time_out, Content::Ticket)
    }
}
