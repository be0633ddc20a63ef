use cleanfleet_store::Maintenance;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// cleanfleet: city sanitation fleets and facilities, from MQTT devices to the numbers a city
/// runs on.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML); see deploy/cleanfleet.example.toml. Environment variables
    /// CLEANFLEET__SECTION__KEY override it.
    #[arg(long, global = true, env = "CLEANFLEET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: embedded MQTT broker, ingest, store, API, simulated fleet.
    Demo {
        /// A road network (OpenStreetMap `.osm.pbf` or `.geojson`) instead of the built-in
        /// demo town, for the fleet and coverage; overrides `[roads] file`.
        #[arg(long)]
        roads: Option<PathBuf>,
    },
    /// Only the embedded MQTT broker.
    Broker,
    /// Only ingestion, from the broker at `[broker] url` into the store.
    Ingest,
    /// Only the HTTP API over the store.
    Api,
    /// Only the coverage stage: matches the store's new fixes and keeps its passes current.
    Coverage,
    /// Only the simulated fleet, publishing to the broker at `[broker] url`.
    Sim {
        /// A road network (`.osm.pbf` or `.geojson`) to drive on; overrides `[roads] file`.
        #[arg(long)]
        roads: Option<PathBuf>,
    },
    /// Many devices, each with its own connection, publishing fix batches at a fixed rate to
    /// `[broker] url`; prints the achieved rate. Flags override `[load]`.
    Load {
        #[arg(long)]
        devices: Option<u32>,
        /// Seconds between one device's messages.
        #[arg(long)]
        interval_s: Option<f64>,
        #[arg(long)]
        fixes_per_message: Option<u32>,
        #[arg(long)]
        duration_s: Option<f64>,
        /// Issue (or renew) the load devices' credentials in this config's store first, for
        /// a run against the embedded broker on the same store.
        #[arg(long)]
        provision: bool,
    },
    /// Match a track file to the roads and cut it into passes as the coverage stage would
    /// (with `[coverage]`'s matcher and rules); prints JSON: a summary, each fix's place,
    /// the passes with their validity, and the matched path as GeoJSON.
    Match {
        /// The road network (`.osm.pbf` or `.geojson`); default `[roads] file`, else the
        /// built-in demo town.
        #[arg(long)]
        roads: Option<PathBuf>,
        /// The vehicle's work: sweep, wash_sweep, flush, sprinkle or manual.
        #[arg(long, default_value = "sweep")]
        work: String,
        /// gpx, csv or geojson; by default from the file's extension.
        #[arg(long)]
        format: Option<String>,
        /// The track: GPX, CSV (time,lat,lon[,speed_kmh,heading_deg,hdop,satellites,tools_on])
        /// or GeoJSON points with a time property.
        track: PathBuf,
    },
    /// Device credentials for the MQTT broker, in the store of `data_dir`. A secret is
    /// printed once, as `device_id:secret` (what the device's firmware is given), and only
    /// its hash is kept.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Check the configuration and print it with every default filled in.
    CheckConfig,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Issue credentials: prints `id:secret` per device.
    Add {
        /// A device kind (sweeper, washer_sweeper, flusher, sprinkler, collection_truck,
        /// wearable, bin, toilet, weighbridge, scale), or `ingest` for the ingest service
        /// (its name must start with `cleanfleet-`).
        #[arg(long)]
        role: String,
        /// Device ids (or the service's name).
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Every credential: id, role, issued, rotated, revoked.
    List,
    /// New secrets for live credentials (the old ones stop working at once); prints
    /// `id:secret` per device.
    Rotate {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Revoke credentials for good: their devices are refused, their connections closed.
    Revoke {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a Mosquitto password file of the live credentials (`password_file` of
    /// deploy/mosquitto.conf): the same hashes, so the same secrets log in there.
    MosquittoPasswd,
    /// Print a Mosquitto ACL file (`acl_file` of deploy/mosquitto.conf) of the live
    /// credentials: each device writes only its own topics, ingest services read the data
    /// topics, nobody else reads anything.
    MosquittoAcl,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref(), std::env::vars())?;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.0))
        .context("invalid log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli.command, config))
}

async fn devices(command: DevicesCommand, config: &Config) -> anyhow::Result<()> {
    use cleanfleet_identity::{mosquitto_password_line, secrets_line, Role};
    use cleanfleet_store::credentials as devices;
    use cleanfleet_store::CredentialStore;
    let store = cleanfleet::open_store(config)?;
    let now = jiff::Timestamp::now();
    match command {
        DevicesCommand::Add { role, ids } => {
            let role: Role = role.parse()?;
            for id in ids {
                let secret = devices::issue(&store, role, &id, now)
                    .await
                    .with_context(|| format!("cannot issue a credential for {id:?}"))?;
                println!("{}", secrets_line(&id, &secret));
            }
        }
        DevicesCommand::List => {
            println!(
                "{:<24} {:<18} {:<26} {:<26} revoked",
                "id", "role", "issued", "rotated"
            );
            for c in store.credentials().await? {
                let revoked = c.revoked_at.map_or("-".to_owned(), |t| t.to_string());
                println!(
                    "{:<24} {:<18} {:<26} {:<26} {revoked}",
                    c.username,
                    c.role.as_str(),
                    c.issued_at.to_string(),
                    c.rotated_at.to_string()
                );
            }
        }
        DevicesCommand::Rotate { ids } => {
            for id in ids {
                let secret = devices::rotate(&store, &id, now).await?;
                println!("{}", secrets_line(&id, &secret));
            }
        }
        DevicesCommand::Revoke { ids } => {
            for id in ids {
                devices::revoke(&store, &id, now).await?;
                eprintln!("{id}: revoked");
            }
        }
        DevicesCommand::MosquittoAcl => {
            let live: Vec<(String, Role)> = store
                .credentials()
                .await?
                .into_iter()
                .filter(|c| c.revoked_at.is_none())
                .map(|c| (c.username, c.role))
                .collect();
            print!("{}", cleanfleet_identity::mosquitto_acl(&live));
        }
        DevicesCommand::MosquittoPasswd => {
            for c in store.credentials().await? {
                if c.revoked_at.is_none() {
                    println!("{}", mosquitto_password_line(&c.username, &c.secret_hash));
                }
            }
        }
    }
    store.close().await?;
    Ok(())
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        cleanfleet::wait_for_shutdown_signal().await;
        signal.cancel();
    });
    let mut config = config;
    match command {
        Command::Demo { roads } => {
            config.roads.file = roads.or(config.roads.file);
            cleanfleet::demo(config, shutdown).await
        }
        Command::Sim { roads } => {
            config.roads.file = roads.or(config.roads.file);
            let network = cleanfleet::load_network(config.roads.file.as_deref())?;
            cleanfleet::run_sim(config, network, shutdown)
                .await
                .map(drop)
        }
        Command::Load {
            devices,
            interval_s,
            fixes_per_message,
            duration_s,
            provision,
        } => {
            let mut load = config.load.clone();
            load.devices = devices.unwrap_or(load.devices);
            load.message_interval_s = interval_s.unwrap_or(load.message_interval_s);
            load.fixes_per_message = fixes_per_message.unwrap_or(load.fixes_per_message);
            load.duration_s = duration_s.unwrap_or(load.duration_s);
            if provision {
                let store = cleanfleet::open_store(&config)?;
                let kind = cleanfleet_identity::Role::Device(cleanfleet_sim::LOAD_DEVICE_KIND);
                let devices = cleanfleet_sim::load_device_ids(load.devices).map(|id| (kind, id));
                load.secrets = cleanfleet_store::credentials::provision(
                    &store,
                    devices,
                    jiff::Timestamp::now(),
                )
                .await?;
                store.close().await?;
            }
            let fixes_per_message = f64::from(load.fixes_per_message);
            let report = cleanfleet::run_load(&config, load, shutdown).await?;
            println!(
                "{} devices connected in {:.1} s; {} messages ({} fixes) published, {} acked by the broker in {:.1} s: {:.0} messages/s, {:.0} fixes/s",
                report.devices_connected,
                report.ramp_up.as_secs_f64(),
                report.messages_published,
                report.fixes_published,
                report.messages_acked,
                report.publishing.as_secs_f64(),
                report.acked_messages_per_s(),
                report.acked_messages_per_s() * fixes_per_message,
            );
            Ok(())
        }
        Command::Match {
            roads,
            work,
            format,
            track,
        } => {
            let work = cleanfleet_coverage::WorkType::parse(&work).with_context(|| {
                format!("--work {work}: not one of sweep, wash_sweep, flush, sprinkle, manual")
            })?;
            let format = match format {
                Some(name) => cleanfleet_coverage::TrackFormat::parse(&name)
                    .with_context(|| format!("--format {name}: not gpx, csv or geojson"))?,
                None => cleanfleet_coverage::TrackFormat::from_path(&track).with_context(|| {
                    format!(
                        "{}: say --format gpx, csv or geojson (the extension does not)",
                        track.display()
                    )
                })?,
            };
            config.coverage.check().map_err(anyhow::Error::msg)?;
            let bytes = std::fs::read(&track)
                .with_context(|| format!("cannot read {}", track.display()))?;
            let network = cleanfleet::load_network(roads.or(config.roads.file).as_deref())?;
            let result = cleanfleet::coverage::match_track_file(
                &network,
                &config.coverage,
                work,
                format,
                &bytes,
            )
            .with_context(|| track.display().to_string())?;
            println!("{result:#}");
            Ok(())
        }
        Command::Devices { command } => devices(command, &config).await,
        Command::CheckConfig => {
            println!("{config:#?}");
            Ok(())
        }
        Command::Broker | Command::Ingest | Command::Api | Command::Coverage => {
            let parts = match command {
                Command::Broker => Parts {
                    embedded_broker: true,
                    ..Parts::NONE
                },
                Command::Ingest => Parts {
                    ingest: true,
                    ..Parts::NONE
                },
                Command::Api => Parts {
                    api: true,
                    ..Parts::NONE
                },
                _ => Parts {
                    coverage: true,
                    ..Parts::NONE
                },
            };
            let stack = Stack::start(config, parts).await?;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = stack.failed() => {}
            }
            stack.stop().await
        }
    }
}
