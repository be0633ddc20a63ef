//! One device-hour of fixes as a compressed, column-by-column block.
//!
//! A row of `fixes` costs about a hundred bytes (sixteen columns, most of them eight-byte
//! reals, plus the B-tree's keys); a vehicle's fixes of one hour change little from one to
//! the next, so stored column by column they compress several times over. Each column is a
//! [pco](https://docs.rs/pco) stream (numerical compression with delta encoding, lossless
//! for floats bit by bit); an optional column is a presence tag and, when mixed, a presence
//! stream, then the values of the fixes that have it. **Decoding returns exactly the rows
//! that were encoded** (tested by property over arbitrary values, NaN and signed zero too).

use cleanfleet_model::Fix;
use pco::data_types::Number;
use pco::standalone::{simple_compress, simple_decompress};
use pco::ChunkConfig;

use super::{ms, ts, work_flags, work_state};

/// A fix as stored: the fix, when it was received and where from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredFix {
    pub fix: Fix,
    pub received_ms: i64,
    pub source_key: i64,
}

/// The layout's version, the block's first byte.
const FORMAT: u8 = 1;

/// Presence tags of an optional column.
const NONE_PRESENT: u8 = 0;
const ALL_PRESENT: u8 = 1;
const SOME_PRESENT: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub(super) enum BlockError {
    #[error("fix block: {0}")]
    Corrupt(String),
    #[error("fix block compression: {0}")]
    Codec(#[from] pco::errors::PcoError),
}

/// Encodes fixes (any order; one per device time is the caller's invariant).
pub(super) fn encode(rows: &[StoredFix]) -> Result<Vec<u8>, BlockError> {
    let mut out = vec![FORMAT];
    put_varint(&mut out, rows.len() as u64);
    if rows.is_empty() {
        return Ok(out);
    }
    let column = |f: fn(&StoredFix) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    put_numbers(&mut out, &column(|r| ms(r.fix.time)))?;
    put_numbers(&mut out, &column(|r| r.received_ms))?;
    put_numbers(&mut out, &column(|r| r.source_key))?;
    put_numbers(&mut out, &column(|r| work_flags(&r.fix.work)))?;
    put_numbers(
        &mut out,
        &rows.iter().map(|r| r.fix.lat).collect::<Vec<_>>(),
    )?;
    put_numbers(
        &mut out,
        &rows.iter().map(|r| r.fix.lon).collect::<Vec<_>>(),
    )?;
    put_optional(&mut out, rows, |r| r.fix.seq)?;
    put_optional(&mut out, rows, |r| r.fix.speed_kmh)?;
    put_optional(&mut out, rows, |r| r.fix.heading_deg)?;
    put_optional(&mut out, rows, |r| r.fix.hdop)?;
    put_optional(&mut out, rows, |r| r.fix.satellites.map(u32::from))?;
    put_optional(&mut out, rows, |r| r.fix.water_tank_ratio)?;
    put_optional(&mut out, rows, |r| r.fix.load_kg)?;
    put_optional(&mut out, rows, |r| r.fix.odometer_m)?;
    put_optional(&mut out, rows, |r| r.fix.lifter_cycles)?;
    put_optional(&mut out, rows, |r| r.fix.sos.map(u32::from))?;
    Ok(out)
}

/// The fixes of a block, in the order they were encoded.
pub(super) fn decode(block: &[u8]) -> Result<Vec<StoredFix>, BlockError> {
    let mut r = Reader { rest: block };
    let format = r.byte()?;
    if format != FORMAT {
        return Err(BlockError::Corrupt(format!("unknown format {format}")));
    }
    let n = r.varint()? as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let times: Vec<i64> = r.numbers(n)?;
    let received: Vec<i64> = r.numbers(n)?;
    let sources: Vec<i64> = r.numbers(n)?;
    let flags: Vec<i64> = r.numbers(n)?;
    let lats: Vec<f64> = r.numbers(n)?;
    let lons: Vec<f64> = r.numbers(n)?;
    let seqs: Vec<Option<u64>> = r.optional(n)?;
    let speeds: Vec<Option<f64>> = r.optional(n)?;
    let headings: Vec<Option<f64>> = r.optional(n)?;
    let hdops: Vec<Option<f64>> = r.optional(n)?;
    let satellites: Vec<Option<u32>> = r.optional(n)?;
    let water: Vec<Option<f64>> = r.optional(n)?;
    let loads: Vec<Option<f64>> = r.optional(n)?;
    let odometers: Vec<Option<f64>> = r.optional(n)?;
    let lifters: Vec<Option<u64>> = r.optional(n)?;
    let sos: Vec<Option<u32>> = r.optional(n)?;
    if !r.rest.is_empty() {
        return Err(BlockError::Corrupt(format!(
            "{} bytes after the last column",
            r.rest.len()
        )));
    }
    Ok((0..n)
        .map(|i| StoredFix {
            fix: Fix {
                time: ts(times[i]),
                seq: seqs[i],
                lat: lats[i],
                lon: lons[i],
                speed_kmh: speeds[i],
                heading_deg: headings[i],
                hdop: hdops[i],
                satellites: satellites[i].map(|s| s as u8),
                work: work_state(flags[i]),
                water_tank_ratio: water[i],
                load_kg: loads[i],
                odometer_m: odometers[i],
                lifter_cycles: lifters[i],
                sos: sos[i].map(|s| s != 0),
            },
            received_ms: received[i],
            source_key: sources[i],
        })
        .collect())
}

fn put_numbers<T: Number>(out: &mut Vec<u8>, values: &[T]) -> Result<(), BlockError> {
    let bytes = simple_compress(values, &ChunkConfig::default())?;
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(&bytes);
    Ok(())
}

fn put_optional<T: Number>(
    out: &mut Vec<u8>,
    rows: &[StoredFix],
    value: impl Fn(&StoredFix) -> Option<T>,
) -> Result<(), BlockError> {
    let values: Vec<Option<T>> = rows.iter().map(value).collect();
    let present: Vec<T> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        out.push(NONE_PRESENT);
        return Ok(());
    }
    if present.len() == values.len() {
        out.push(ALL_PRESENT);
    } else {
        out.push(SOME_PRESENT);
        let mask: Vec<u32> = values.iter().map(|v| u32::from(v.is_some())).collect();
        put_numbers(out, &mask)?;
    }
    put_numbers(out, &present)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BlockError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| BlockError::Corrupt("truncated".into()))?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(BlockError::Corrupt("varint too long".into()))
    }

    fn numbers<T: Number>(&mut self, n: usize) -> Result<Vec<T>, BlockError> {
        let len = self.varint()? as usize;
        if len > self.rest.len() {
            return Err(BlockError::Corrupt("truncated column".into()));
        }
        let (column, rest) = self.rest.split_at(len);
        self.rest = rest;
        let values: Vec<T> = simple_decompress(column)?;
        if values.len() != n {
            return Err(BlockError::Corrupt(format!(
                "a column of {} values in a block of {n}",
                values.len()
            )));
        }
        Ok(values)
    }

    fn optional<T: Number>(&mut self, n: usize) -> Result<Vec<Option<T>>, BlockError> {
        match self.byte()? {
            NONE_PRESENT => Ok(vec![None; n]),
            ALL_PRESENT => Ok(self.numbers(n)?.into_iter().map(Some).collect()),
            SOME_PRESENT => {
                let mask: Vec<u32> = self.numbers(n)?;
                let count = mask.iter().filter(|&&m| m != 0).count();
                let mut present = self.numbers::<T>(count)?.into_iter();
                Ok(mask
                    .iter()
                    .map(|&m| if m != 0 { present.next() } else { None })
                    .collect())
            }
            tag => Err(BlockError::Corrupt(format!("unknown presence tag {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use cleanfleet_model::WorkState;
    use proptest::prelude::*;

    use super::*;

    /// A vehicle's hour as a receiver reports it: 1 Hz, six decimals, speed and HDOP to a
    /// tenth, heading to a degree.
    fn hour_of_a_sweeper() -> Vec<StoredFix> {
        let start_ms = 1_795_000_000_000;
        (0..3600)
            .map(|i| {
                let t = i as f64;
                let round = |v: f64, d: f64| (v * d).round() / d;
                StoredFix {
                    fix: Fix {
                        time: ts(start_ms + i * 1000),
                        seq: Some(10_000 + i as u64),
                        lat: round(43.7384 + 0.00004 * t + 0.0003 * (t / 90.0).sin(), 1e6),
                        lon: round(7.4246 + 0.00003 * t, 1e6),
                        speed_kmh: Some(round(6.0 + 2.0 * (t / 40.0).sin(), 10.0)),
                        heading_deg: Some(round(90.0 + 30.0 * (t / 120.0).sin(), 1.0)),
                        hdop: Some(round(1.2 + 0.4 * (t / 300.0).cos(), 10.0)),
                        satellites: Some(9),
                        work: WorkState {
                            brush: i % 600 < 500,
                            ..WorkState::default()
                        },
                        water_tank_ratio: Some(round(0.9 - t / 36_000.0, 100.0)),
                        load_kg: None,
                        odometer_m: Some(round(120_000.0 + 1.6 * t, 10.0)),
                        lifter_cycles: None,
                        sos: None,
                    },
                    received_ms: start_ms + i * 1000 + 1500 + (i % 7) * 13,
                    source_key: 3,
                }
            })
            .collect()
    }

    /// Encodes and decodes `rows`, checks they came back, and says what the block cost.
    fn round_trip_bytes_per_fix(rows: &[StoredFix]) -> f64 {
        let block = encode(rows).unwrap();
        assert_eq!(decode(&block).unwrap(), rows);
        block.len() as f64 / rows.len() as f64
    }

    #[test]
    fn an_hour_of_a_sweeper_round_trips_in_a_fraction_of_its_rows() {
        let rows = hour_of_a_sweeper();
        let bytes_per_fix = round_trip_bytes_per_fix(&rows);
        assert!(bytes_per_fix < 20.0, "{bytes_per_fix} bytes per fix");
    }

    /// A receiver that sends its reals to full precision, and noisy ones at that.
    #[test]
    fn an_hour_of_full_precision_noise_stays_under_forty_bytes_a_fix() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut odometer_m = 120_000.0;
        let rows: Vec<StoredFix> = (0..3600)
            .map(|i| {
                let t = i as f64;
                let speed_kmh = 30.0 * uniform();
                odometer_m += speed_kmh / 3.6;
                StoredFix {
                    fix: Fix {
                        time: ts(1_795_000_000_000 + i * 1000),
                        seq: Some(i as u64),
                        lat: 43.7384 + 0.00004 * t + 0.0001 * (uniform() - 0.5),
                        lon: 7.4246 + 0.00003 * t + 0.0001 * (uniform() - 0.5),
                        speed_kmh: Some(speed_kmh),
                        heading_deg: Some(360.0 * uniform()),
                        hdop: Some(0.8 + 4.0 * uniform()),
                        satellites: Some(4 + (uniform() * 8.0) as u8),
                        work: work_state((uniform() * 16.0) as i64),
                        water_tank_ratio: None,
                        load_kg: None,
                        odometer_m: Some(odometer_m),
                        lifter_cycles: None,
                        sos: Some(false),
                    },
                    received_ms: 1_795_000_000_000 + i * 1000 + (uniform() * 5000.0) as i64,
                    source_key: 3,
                }
            })
            .collect();
        let bytes_per_fix = round_trip_bytes_per_fix(&rows);
        assert!(bytes_per_fix < 40.0, "{bytes_per_fix} bytes per fix");
    }

    #[test]
    fn an_empty_block_and_garbage() {
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), Vec::new());
        let block = encode(&hour_of_a_sweeper()[..10]).unwrap();
        for cut in [0, 1, 5, block.len() - 1] {
            assert!(decode(&block[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = block.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other_format = block;
        other_format[0] = FORMAT + 1;
        assert!(decode(&other_format).is_err());
    }

    fn arbitrary_fix() -> impl Strategy<Value = StoredFix> {
        let reals = (
            any::<f64>(),
            any::<f64>(),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
            proptest::option::of(any::<f64>()),
        );
        let others = (
            -1_000_000_000_000i64..5_000_000_000_000,
            any::<i64>(),
            any::<i64>(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<bool>()),
            0i64..16,
        );
        (reals, others).prop_map(
            |(
                (lat, lon, speed, heading, hdop, water, load, odometer),
                (time_ms, received_ms, source_key, seq, satellites, lifter, sos, flags),
            )| StoredFix {
                fix: Fix {
                    time: ts(time_ms),
                    seq,
                    lat,
                    lon,
                    speed_kmh: speed,
                    heading_deg: heading,
                    hdop,
                    satellites,
                    work: work_state(flags),
                    water_tank_ratio: water,
                    load_kg: load,
                    odometer_m: odometer,
                    lifter_cycles: lifter,
                    sos,
                },
                received_ms,
                source_key,
            },
        )
    }

    /// Floats compared by their bits: NaN equals itself, −0 is not +0.
    fn bits(rows: &[StoredFix]) -> Vec<Vec<Option<u64>>> {
        rows.iter()
            .map(|r| {
                let f = &r.fix;
                [Some(f.lat), Some(f.lon), f.speed_kmh, f.heading_deg, f.hdop]
                    .into_iter()
                    .chain([f.water_tank_ratio, f.load_kg, f.odometer_m])
                    .map(|v| v.map(f64::to_bits))
                    .collect()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_fixes_decode_to_exactly_what_was_encoded(
            rows in proptest::collection::vec(arbitrary_fix(), 0..300)
        ) {
            let decoded = decode(&encode(&rows).unwrap()).unwrap();
            prop_assert_eq!(bits(&decoded), bits(&rows));
            let without_reals = |rows: &[StoredFix]| -> Vec<StoredFix> {
                rows.iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r.fix.lat = 0.0;
                        r.fix.lon = 0.0;
                        for v in [
                            &mut r.fix.speed_kmh,
                            &mut r.fix.heading_deg,
                            &mut r.fix.hdop,
                            &mut r.fix.water_tank_ratio,
                            &mut r.fix.load_kg,
                            &mut r.fix.odometer_m,
                        ] {
                            *v = v.map(|_| 0.0);
                        }
                        r
                    })
                    .collect()
            };
            prop_assert_eq!(without_reals(&decoded), without_reals(&rows));
        }
    }
}
