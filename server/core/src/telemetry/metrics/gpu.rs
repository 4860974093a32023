//! `gpu_utilization_ratio` and `gpu_memory_used_bytes` from NVML (feature `cuda`), read at each
//! scrape. NVML (`libnvidia-ml.so.1`, from the driver) is loaded at run time; where it cannot be
//! loaded the collector is not registered, so the series are absent rather than zero.
//!
//! The `gpu` label is the CUDA ordinal served; NVML is asked for the same index, which is the
//! same device when one GPU is visible (a Kubernetes pod with one `nvidia.com/gpu`) or
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` is set.

use nvml_wrapper::Nvml;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the served GPU's utilisation and memory at each scrape.
pub struct GpuCollector {
    nvml: Nvml,
    gpu: u32,
}

impl std::fmt::Debug for GpuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuCollector")
            .field("gpu", &self.gpu)
            .finish()
    }
}

impl GpuCollector {
    /// `Err` (with the reason) when NVML cannot be loaded or has no device `gpu`.
    pub fn new(gpu: u32) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        nvml.device_by_index(gpu)
            .map_err(|e| format!("NVML device {gpu}: {e}"))?;
        Ok(GpuCollector { nvml, gpu })
    }
}

impl Collector for GpuCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Ok(device) = self.nvml.device_by_index(self.gpu) else {
            return Ok(());
        };
        let label = [("gpu", self.gpu.to_string())];
        let mut gauge = |name: &str, help: &str, v: f64| -> std::fmt::Result {
            let g = ConstGauge::new(v);
            let mut family = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(family.encode_family(&label)?)
        };
        if let Ok(u) = device.utilization_rates() {
            gauge(
                "gpu_utilization_ratio",
                "Fraction of the last sample period in which a kernel ran (NVML)",
                f64::from(u.gpu) / 100.0,
            )?;
        }
        if let Ok(m) = device.memory_info() {
            gauge(
                "gpu_memory_used_bytes",
                "GPU memory in use (NVML)",
                m.used as f64,
            )?;
        }
        Ok(())
    }
}
