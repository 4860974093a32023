//! The `inference-gateway` binary: reads the config, sets up logging, binds, and calls
//! [`gateway::run`]. Subcommands: `generate-model` writes the built-in model file; `plan-check`
//! runs the GPU engine's plan on its CPU twin against ONNX Runtime; `check-quantisation`
//! compares the int8 model with fp32.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod tools;

use tools::{bench_engine, check_quant, plan_check};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ResNet50 image classification over HTTP. With no subcommand: serve, configured by
/// environment variables and `.env` (see README.md).
#[derive(Parser, Debug)]
#[command(name = "inference-gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Write the built-in seeded ResNet50 as ONNX.
    GenerateModel {
        /// Seed of the weights.
        #[arg(long, default_value_t = models::DEFAULT_SEED)]
        seed: u64,
        /// Output file (default `resnet50-seed{SEED}.onnx`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the GPU engine's plan (fp16, folded weights, the same slots and buckets) on its CPU
    /// twin and compare its answers with the CPU engine (ONNX Runtime).
    PlanCheck(plan_check::Args),
    /// Quantise the model to int8 (as MODEL_PRECISION=int8 does) with each calibration method
    /// and report its top-1 agreement and logit error against fp32.
    CheckQuantisation(check_quant::Args),
    /// Model-only images/s of the GPU plan at given batch sizes (no HTTP, no decoding).
    BenchEngine(bench_engine::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None | Some(Command::Serve) => serve(),
        Some(Command::GenerateModel { seed, out }) => generate(seed, out),
        Some(Command::PlanCheck(args)) => {
            let config = gateway::Config::from_env()?;
            gateway::telemetry::init_logging(&config.telemetry);
            plan_check::run(&config, &args)
        }
        Some(Command::CheckQuantisation(args)) => {
            let config = gateway::Config::from_env()?;
            gateway::telemetry::init_logging(&config.telemetry);
            check_quant::run(&config, &args)
        }
        Some(Command::BenchEngine(args)) => {
            let config = gateway::Config::from_env()?;
            gateway::telemetry::init_logging(&config.telemetry);
            bench_engine::run(&config, &args)
        }
    }
}

fn serve() -> anyhow::Result<()> {
    let config = gateway::Config::from_env()?;
    gateway::telemetry::init_logging(&config.telemetry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.app.workers)
        .thread_name("http")
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let addr = (config.http.host, config.http.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST, PORT)", addr.0, addr.1))?;
        tracing::info!(addr = %listener.local_addr()?, app = %config.app.name, version = %config.app.version, "listening");
        let grpc = match config.http.grpc_port {
            Some(port) => {
                let grpc = tokio::net::TcpListener::bind((addr.0, port))
                    .await
                    .with_context(|| format!("cannot listen on {}:{port} (HOST, GRPC_PORT)", addr.0))?;
                tracing::info!(addr = %grpc.local_addr()?, "listening for KServe v2 gRPC");
                Some(grpc)
            }
            None => None,
        };
        let listeners = gateway::Listeners { http: listener, grpc };
        gateway::run(config, listeners, shutdown_signal()).await?;
        Ok(())
    });
    // A model load still running on a blocking thread must not hold the exit past the drain.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn generate(seed: u64, out: Option<PathBuf>) -> anyhow::Result<()> {
    let out = out.unwrap_or_else(|| PathBuf::from(format!("resnet50-seed{seed}.onnx")));
    let config = gateway::Config::from_env()?;
    engine::init_onnx_runtime(&config.model.ort_dylib)?;
    let bytes = models::generate_resnet50(seed, config.model.engine_threads)?;
    std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote {} ({} bytes, seed {seed})",
        out.display(),
        bytes.len()
    );
    Ok(())
}
