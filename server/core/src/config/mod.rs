//! Configuration: read once from the environment (and `.env`), validated, split into typed parts.
//! A bad value stops the server at start with a message that names the variable.

mod conn;
mod gpu;
mod otel;
mod precision;
mod preprocess;
pub mod trace;

pub use conn::ConnConfig;
pub use gpu::GpuEngine;
pub use precision::{Precision, PrecisionConfig};
pub use preprocess::Preprocess;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Identity and process settings.
    pub app: AppConfig,
    /// Both front ends, HTTP and gRPC: addresses, limits, timeouts, keys.
    pub http: FrontConfig,
    /// Model and engine.
    pub model: ModelConfig,
    /// The dynamic batcher.
    pub batching: BatchConfig,
    /// Logs, metrics, traces.
    pub telemetry: TelemetryConfig,
}

/// Identity and process settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `APP_NAME`: service name in logs and metrics.
    pub name: String,
    /// `APP_VERSION`.
    pub version: String,
    /// `DEBUG`: error bodies may carry internal detail.
    pub debug: bool,
    /// `WORKERS`: request-handling (tokio worker) threads.
    pub workers: usize,
}

/// Both front ends, HTTP and gRPC (the field is `Config::http` for history): addresses, body
/// and image limits, the request deadline, the drain, the API keys, connection hygiene.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// `HOST`.
    pub host: IpAddr,
    /// `PORT`.
    pub port: u16,
    /// Port of the KServe v2 gRPC service (`GRPC_PORT`, default 8001 as Triton's; 0: off).
    pub grpc_port: Option<u16>,
    /// `MAX_BODY_BYTES`: larger bodies get 413.
    pub max_body_bytes: usize,
    /// `MAX_IMAGE_PIXELS`: images whose header claims more get 413 before decoding.
    pub max_image_pixels: u64,
    /// `PREPROCESS`: how JPEGs are decoded unless a request says (`exact` or `draft`).
    pub preprocess: Preprocess,
    /// `REQUEST_TIMEOUT`: per-request deadline.
    pub request_timeout: Duration,
    /// `GRACEFUL_SHUTDOWN_TIMEOUT`: time to drain after SIGTERM.
    pub graceful_shutdown_timeout: Duration,
    /// `API_KEYS`: accepted keys for `/predict`, the v2 routes, the repository API and every
    /// gRPC method; empty means no authentication. Redacted in
    /// `Debug`.
    pub api_keys: Redacted<Vec<String>>,
    /// Connection limits and timeouts on both ports.
    pub conn: ConnConfig,
    /// `ENABLE_DOCS`: serve `/openapi.json` and the `/docs` page.
    pub enable_docs: bool,
}

/// A secret (API keys, OTLP auth headers): used like the value it holds, but its `Debug` says
/// only how many there are, so a `?config` log line cannot leak it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T>(pub T);

impl<T> std::ops::Deref for Redacted<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<E> std::fmt::Debug for Redacted<Vec<E>> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted>", self.0.len())
    }
}

/// Where the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime on the CPU.
    Cpu,
    /// CUDA device N (needs a build with the GPU engine).
    Cuda(u32),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Largest batch on a GPU: the largest CUDA graph bucket.
pub const MAX_GPU_BATCH: usize = 256;

/// Model and engine.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// `MODEL_NAME`: the name clients address.
    pub name: String,
    /// `MODEL_PATH`: a user's ONNX ResNet50; `None` → the built-in model.
    pub path: Option<PathBuf>,
    /// `MODEL_CACHE_DIR`: where the built-in model is generated and kept.
    pub cache_dir: PathBuf,
    /// `MODEL_SEED`: seed of the built-in model.
    pub seed: u64,
    /// `MODEL_DEVICE`.
    pub device: Device,
    /// `GPU_ENGINE`: which engine serves on a GPU.
    pub gpu_engine: GpuEngine,
    /// `MODEL_WARMUP`: run each warm-up batch size once before ready.
    pub warmup: bool,
    /// `CUDA_GRAPHS`: the cuDNN engine replays one CUDA graph per batch bucket (off: launches
    /// every step, plan B of a first GPU run).
    pub cuda_graphs: bool,
    /// `CUDNN_TUNE`: the cuDNN engine times each convolution's algorithms at start (off:
    /// IMPLICIT_PRECOMP_GEMM untimed, plan B).
    pub cudnn_tune: bool,
    /// `ORT_DYLIB_PATH`: the ONNX Runtime shared library.
    pub ort_dylib: PathBuf,
    /// `ENGINE_THREADS`: ONNX Runtime intra-op threads.
    pub engine_threads: usize,
    /// `DECODE_THREADS`: image decoding threads.
    pub decode_threads: usize,
    /// `ENGINE_SPIN`: ONNX Runtime's idle intra-op threads spin (off yields the cores at once,
    /// for hosts that share them with other work).
    pub engine_spin: bool,
    /// `RELOAD`: watch the model file and reload it when it is replaced.
    pub reload: bool,
    /// `MODEL_PRECISION` and its calibration settings.
    pub precision: PrecisionConfig,
}

/// The dynamic batcher.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// `MAX_BATCH_SIZE`.
    pub max_batch_size: usize,
    /// `MAX_BATCH_DELAY_MS`: how long a batch may grow while every lane is busy, or while an idle
    /// lane waits for images already admitted and still being decoded.
    pub max_batch_delay: Duration,
    /// `MAX_QUEUE_SIZE`: images admitted and not yet in a batch; beyond it → 429.
    pub max_queue_size: usize,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs, metrics, traces.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `LOG_LEVEL`.
    pub log_level: tracing::Level,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `ENABLE_METRICS`: serve `/metrics`.
    pub enable_metrics: bool,
    /// `ENABLE_TRACING` and the standard `OTEL_*` variables.
    pub trace: trace::TraceConfig,
}

/// A variable with a value we cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(
        &self,
        var: &'static str,
        default: T,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(value) => f(&value).map_err(|reason| ConfigError { var, value, reason }),
        }
    }

    fn number<T>(&self, var: &'static str, default: T, min: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        self.parse(var, default, |s| match s.parse::<T>() {
            Ok(v) if v >= min => Ok(v),
            Ok(_) => Err(format!("must be at least {min}")),
            Err(_) => Err("not a number".into()),
        })
    }

    fn seconds(&self, var: &'static str, default: f64) -> Result<Duration, ConfigError> {
        self.parse(var, Duration::from_secs_f64(default), |s| {
            match s.parse::<f64>() {
                Ok(v) if v > 0.0 && v < 1e6 => Ok(Duration::from_secs_f64(v)),
                _ => Err("expected a positive number of seconds".into()),
            }
        })
    }

    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parse(var, default, |s| match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }
}

impl Config {
    /// Reads `.env` (if present; real environment variables win) and then the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the config from any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let app = AppConfig {
            name: env
                .get("APP_NAME")
                .unwrap_or_else(|| "inference-gateway".into()),
            version: env
                .get("APP_VERSION")
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            debug: env.flag("DEBUG", false)?,
            workers: env.number("WORKERS", cores.min(4), 1)?,
        };
        let model = model_config(&env, cores)?;
        Ok(Self {
            http: FrontConfig {
                host: env.parse("HOST", IpAddr::from([0, 0, 0, 0]), |s| {
                    s.parse()
                        .map_err(|_| "expected an IP address such as 0.0.0.0".into())
                })?,
                port: env.number("PORT", 8000, 0)?,
                grpc_port: Some(env.number("GRPC_PORT", 8001, 0)?).filter(|&p| p != 0),
                max_body_bytes: env.number("MAX_BODY_BYTES", 10 << 20, 1024)?,
                max_image_pixels: env.number("MAX_IMAGE_PIXELS", 40_000_000, 1)?,
                preprocess: env.parse("PREPROCESS", Preprocess::Exact, |s| {
                    Preprocess::parse(s).ok_or_else(|| "expected exact or draft".into())
                })?,
                request_timeout: env.seconds("REQUEST_TIMEOUT", 30.0)?,
                graceful_shutdown_timeout: env.seconds("GRACEFUL_SHUTDOWN_TIMEOUT", 30.0)?,
                api_keys: Redacted(env.get("API_KEYS").map_or_else(Vec::new, |s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(String::from)
                        .collect()
                })),
                conn: conn::conn_config(&env)?,
                enable_docs: env.flag("ENABLE_DOCS", true)?,
            },
            batching: BatchConfig {
                max_batch_size: env.parse("MAX_BATCH_SIZE", 8, |s| {
                    match (s.parse::<usize>(), model.device) {
                        (Ok(0) | Err(_), _) => Err("expected a whole number of at least 1".into()),
                        (Ok(n), Device::Cuda(_)) if n > MAX_GPU_BATCH => Err(format!(
                            "at most {MAX_GPU_BATCH} on a GPU (the largest CUDA graph bucket)"
                        )),
                        (Ok(n), _) => Ok(n),
                    }
                })?,
                max_batch_delay: Duration::from_secs_f64(
                    env.number("MAX_BATCH_DELAY_MS", 5.0, 0.0)? / 1000.0,
                ),
                max_queue_size: env.number("MAX_QUEUE_SIZE", 64, 1)?,
            },
            telemetry: TelemetryConfig {
                log_level: env.parse("LOG_LEVEL", tracing::Level::INFO, |s| {
                    match s.to_ascii_uppercase().as_str() {
                        "TRACE" => Ok(tracing::Level::TRACE),
                        "DEBUG" => Ok(tracing::Level::DEBUG),
                        "INFO" => Ok(tracing::Level::INFO),
                        "WARN" | "WARNING" => Ok(tracing::Level::WARN),
                        "ERROR" | "CRITICAL" => Ok(tracing::Level::ERROR),
                        _ => Err("expected DEBUG, INFO, WARN or ERROR".into()),
                    }
                })?,
                log_format: env.parse("LOG_FORMAT", LogFormat::Text, |s| {
                    match s.to_ascii_lowercase().as_str() {
                        "text" => Ok(LogFormat::Text),
                        "json" => Ok(LogFormat::Json),
                        _ => Err("expected text or json".into()),
                    }
                })?,
                enable_metrics: env.flag("ENABLE_METRICS", true)?,
                trace: otel::trace_config(&env, &app)?,
            },
            model,
            app,
        })
    }
}

fn model_config<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    cores: usize,
) -> Result<ModelConfig, ConfigError> {
    let device = env.parse("MODEL_DEVICE", Device::Cpu, |s| {
        let device = match s.to_ascii_lowercase().as_str() {
            "cpu" => Device::Cpu,
            "cuda" | "gpu" => Device::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Device::Cuda(n),
                _ => return Err("expected cpu, cuda or cuda:N".into()),
            },
        };
        match device {
            Device::Cuda(_) if !cfg!(feature = "cuda") => Err(
                "this build has no CUDA engine: use the CUDA image (Dockerfile.cuda) or build \
                 with `--features cuda`; or MODEL_DEVICE=cpu"
                    .into(),
            ),
            _ => Ok(device),
        }
    })?;
    let name = env.parse("MODEL_NAME", "resnet50".to_string(), |s| {
        let ok = s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(s.to_string())
        } else {
            Err("use letters, digits, '-', '_' or '.', at most 64".into())
        }
    })?;
    let gpu_engine = gpu::gpu_engine(env)?;
    Ok(ModelConfig {
        name,
        path: env.get("MODEL_PATH").map(PathBuf::from),
        cache_dir: env
            .get("MODEL_CACHE_DIR")
            .map_or_else(|| PathBuf::from(".cache/models"), PathBuf::from),
        seed: env.number("MODEL_SEED", models::DEFAULT_SEED, 0)?,
        device,
        gpu_engine,
        warmup: env.flag("MODEL_WARMUP", true)?,
        cuda_graphs: env.flag("CUDA_GRAPHS", true)?,
        cudnn_tune: env.flag("CUDNN_TUNE", true)?,
        ort_dylib: env.get("ORT_DYLIB_PATH").map_or_else(
            || PathBuf::from(".cache/onnxruntime/libonnxruntime.so"),
            PathBuf::from,
        ),
        engine_threads: env.number("ENGINE_THREADS", cores, 1)?,
        decode_threads: env.number("DECODE_THREADS", cores, 1)?,
        engine_spin: env.flag("ENGINE_SPIN", true)?,
        reload: env.flag("RELOAD", false)?,
        precision: precision::precision_config(env, device, gpu_engine)?,
    })
}

#[cfg(test)]
mod tests;
