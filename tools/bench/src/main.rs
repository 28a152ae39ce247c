//! `./dev bench`: measures the running local platform (optimised builds)
//! next to the physical limit built here, in one invocation, and writes
//! `bench/results.md`. Speed is proven here, never by timed assertions in
//! tests. `./dev bench` starts what it needs and passes the settings below.

mod limit;
mod load;
mod operator;
mod outcomes;
mod procs;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "polystream-bench",
    about = "Benchmarks the running local platform into a Markdown table"
)]
pub struct Args {
    /// S1's base URL.
    #[arg(long, env = "POLYSTREAM_API", default_value = "http://127.0.0.1:8000")]
    pub api: String,
    /// The S1 the ingest runs load: one whose topic nothing consumes, so
    /// the figures are S1's own (`./dev bench` starts it); S1's URL if unset.
    #[arg(long, env = "BENCH_INGEST_API")]
    pub ingest_api: Option<String>,
    /// S3's base URL (its /metrics counts indexed documents).
    #[arg(
        long,
        env = "POLYSTREAM_MONITOR",
        default_value = "http://127.0.0.1:8002"
    )]
    pub monitor: String,
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka: String,
    #[arg(
        long,
        env = "MONGODB_URI",
        default_value = "mongodb://127.0.0.1:27017/"
    )]
    pub mongodb: String,
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// The services' pids: `s1_gateway=123,s2_processor=456,...`.
    #[arg(long, env = "BENCH_PIDS", default_value = "")]
    pub pids: String,
    /// Extra lines for the header, `name=value;name=value` (versions, build profile).
    #[arg(long, env = "BENCH_INFO", default_value = "")]
    pub info: String,
    /// Seconds per load run.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Views stored for the history-read runs, one run per size.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    pub views: Vec<u64>,
    /// Commands per S2 throughput run (the hot-partition run uses half).
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Open-loop command rates for the end-to-end latency runs.
    #[arg(long, value_delimiter = ',', default_value = "200,1000,2000")]
    pub rates: Vec<u64>,
    /// StreamingPlatforms applied at once in the operator run.
    #[arg(long, default_value_t = 100)]
    pub platforms: usize,
    /// Seconds the operator's writes are counted once the platforms are up.
    #[arg(long, default_value_t = 60)]
    pub steady_seconds: u64,
    /// Namespace of the operator run's platforms (watched by its operator).
    #[arg(long, env = "BENCH_KUBE_NAMESPACE", default_value = "polystream-bench")]
    pub kube_namespace: String,
    /// The operator that watches that namespace (its /metrics).
    #[arg(
        long,
        env = "BENCH_OPERATOR_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub operator_url: String,
    /// The StreamingPlatform applied, as JSON (`./dev bench` renders
    /// k8s/samples/streamingplatform.yaml).
    #[arg(
        long,
        env = "BENCH_PLATFORM_JSON",
        default_value = "bench/platform.json"
    )]
    pub platform_json: PathBuf,
    /// Only these runs (s2, e2e, reads, ingest, registrations, operator); all if unset.
    #[arg(long, value_delimiter = ',', value_parser = ["s2", "e2e", "reads", "ingest", "registrations", "operator"])]
    pub only: Vec<String>,
    /// Where the table goes.
    #[arg(long, default_value = "bench/results.md")]
    pub out: PathBuf,
}

impl Args {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.seconds == 0
        || args.rates.contains(&0)
        || args.events == 0
        || args.platforms == 0
        || args.steady_seconds == 0
    {
        eprintln!(
            "error: --seconds, --rates, --events, --platforms and --steady-seconds must be positive"
        );
        return ExitCode::from(2);
    }
    match scenarios::run(&args).await {
        Ok(r) => {
            let text = r.markdown();
            if let Some(dir) = args.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(&args.out, &text) {
                eprintln!("error: cannot write {}: {e}", args.out.display());
                return ExitCode::FAILURE;
            }
            println!("{text}");
            eprintln!("wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
