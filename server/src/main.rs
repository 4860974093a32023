//! The `inference-gateway` binary: reads the config, sets up logging, binds, and calls
//! [`gateway::run`]. `inference-gateway generate-model` writes the built-in model file.

use std::path::PathBuf;

use anyhow::Context;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
inference-gateway: ResNet50 image classification over HTTP

USAGE:
    inference-gateway                      serve (configured by environment variables and .env)
    inference-gateway generate-model [--seed N] [--out FILE]
                                           write the built-in seeded ResNet50 as ONNX
    inference-gateway --help | --version

See README.md for the environment variables.";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("generate-model") => generate(&args[1..]),
        Some("--version" | "-V") => {
            println!("inference-gateway {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown argument {other:?}\n\n{USAGE}"),
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
    runtime.block_on(async {
        let addr = (config.http.host, config.http.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST, PORT)", addr.0, addr.1))?;
        tracing::info!(addr = %listener.local_addr()?, app = %config.app.name, version = %config.app.version, "listening");
        gateway::run(config, listener, shutdown_signal()).await?;
        Ok(())
    })
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

fn generate(args: &[String]) -> anyhow::Result<()> {
    let mut seed = models::DEFAULT_SEED;
    let mut out = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => seed = value.parse().context("--seed must be an integer")?,
            "--out" => out = Some(PathBuf::from(value)),
            other => anyhow::bail!("unknown flag {other:?}\n\n{USAGE}"),
        }
    }
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
