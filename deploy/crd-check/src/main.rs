//! Validates the custom resources in rendered manifests against their CRD types (generated from
//! the operators' CRDs by kopium, published as the `kcr_*` crates): a field the CRD does not
//! have, a wrong type or a missing required field is an error.
//!
//! KServe has no such crate: its types are generated here the same way (`kserve/mod.rs`).
//!
//! Usage: `crd-check FILE.yaml...` (multi-document YAML, e.g. `kubectl kustomize` output).
//! Core kinds are skipped (kubernetes-validate checks those); an unknown custom kind is an error.

mod kserve;

use std::process::ExitCode;

use anyhow::{Context, Result};
use kcr_flagger_app::v1beta1::{canaries::Canary, metrictemplates::MetricTemplate};
use kcr_monitoring_coreos_com::v1::{
    prometheusrules::PrometheusRule, servicemonitors::ServiceMonitor,
};
use kserve::{inferenceservices::InferenceService, servingruntimes::ServingRuntime};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Deserializes `doc` as `T`, returning every field path `T` does not know.
fn strict<T: DeserializeOwned>(doc: serde_json::Value) -> Result<Vec<String>> {
    let mut unknown = Vec::new();
    let _: T = serde_ignored::deserialize(doc, |path| unknown.push(path.to_string()))?;
    Ok(unknown)
}

fn check(doc: serde_json::Value) -> Result<Option<(String, Vec<String>)>> {
    let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
    let api = doc["apiVersion"].as_str().unwrap_or_default().to_owned();
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let unknown = match (api.as_str(), kind.as_str()) {
        ("monitoring.coreos.com/v1", "ServiceMonitor") => strict::<ServiceMonitor>(doc)?,
        ("monitoring.coreos.com/v1", "PrometheusRule") => strict::<PrometheusRule>(doc)?,
        ("flagger.app/v1beta1", "Canary") => strict::<Canary>(doc)?,
        ("flagger.app/v1beta1", "MetricTemplate") => strict::<MetricTemplate>(doc)?,
        ("serving.kserve.io/v1alpha1", "ServingRuntime") => strict::<ServingRuntime>(doc)?,
        ("serving.kserve.io/v1beta1", "InferenceService") => strict::<InferenceService>(doc)?,
        (a, _)
            if !a.contains('.')
                || a.ends_with(".k8s.io/v1")
                || a.starts_with("autoscaling/")
                || a.starts_with("apps/")
                || a.starts_with("policy/") =>
        {
            return Ok(None)
        }
        _ => anyhow::bail!("{api} {kind} {name}: no CRD type to check it against"),
    };
    // apiVersion and kind are read by the dispatch above, not fields of the typed structs.
    let unknown = unknown
        .into_iter()
        .filter(|p| p != "apiVersion" && p != "kind")
        .collect();
    Ok(Some((format!("{kind} {name}"), unknown)))
}

fn main() -> ExitCode {
    let mut failed = false;
    for path in std::env::args().skip(1) {
        let result = (|| -> Result<Vec<(String, Vec<String>)>> {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            let mut out = Vec::new();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(doc)?;
                if value.is_null() {
                    continue;
                }
                let json = serde_json::to_value(value)?;
                if let Some(r) = check(json).with_context(|| format!("in {path}"))? {
                    out.push(r);
                }
            }
            Ok(out)
        })();
        match result {
            Ok(resources) => {
                for (what, unknown) in resources {
                    if unknown.is_empty() {
                        println!("ok   {path}: {what}");
                    } else {
                        failed = true;
                        println!("FAIL {path}: {what}: unknown fields {}", unknown.join(", "));
                    }
                }
            }
            Err(e) => {
                failed = true;
                println!("FAIL {path}: {e:#}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
