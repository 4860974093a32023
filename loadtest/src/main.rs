//! `loadtest`: parse flags, build the runtime, run one load or a sweep, report, exit 3 when an
//! SLO threshold is missed.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use loadtest::cli::{Cli, Plan};
use loadtest::sweep;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Returns whether every threshold held.
fn run(cli: Cli) -> anyhow::Result<bool> {
    let plan = cli.plan()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(drive(plan))
}

async fn drive(plan: Plan) -> anyhow::Result<bool> {
    let target = Arc::new(plan.target);
    let (slo, slo_text) = plan.slo.unwrap_or_default();
    if let Some(spec) = &plan.sweep {
        let report = sweep::sweep(&plan.run, spec, target, &slo, &slo_text, plan.sweep_all).await;
        for step in &report.steps {
            println!("{}", step.table());
        }
        match report.best {
            Some(i) => println!(
                "best within '{}': {} → {:.1} 2xx/s",
                slo_text,
                report.steps[i].load_label(),
                report.steps[i].goodput_rps
            ),
            None => println!("no step met '{slo_text}'"),
        }
        if let Some(path) = &plan.json {
            write(path, &serde_json::to_string_pretty(&report)?)?;
        }
        if let Some(path) = &plan.chart {
            write(
                path,
                &sweep::svg(&report, &slo, &format!("loadtest sweep — {slo_text}")),
            )?;
        }
        return Ok(report.best.is_some());
    }
    let mut report = loadtest::run(&plan.run, target).await;
    slo.apply(&mut report);
    print!("{}", report.table());
    if let Some(path) = &plan.json {
        write(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report.slo_passed)
}

fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
