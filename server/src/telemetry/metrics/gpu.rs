//! `gpu_utilization_ratio` and `gpu_memory_used_bytes` from NVML (feature `cuda`), read at each
//! scrape. NVML (`libnvidia-ml.so.1`, from the driver) is loaded at run time; where it cannot be
//! loaded the collector is not registered, so the series are absent rather than zero.
//!
//! The `gpu` label is the CUDA ordinal served; NVML is asked for the same index, which is the
//! same device when one GPU is visible (a Kubernetes pod with one `nvidia.com/gpu`) or
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` is set.

use nvml_wrapper::Nvml;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

/// Reads the served GPU's utilisation and memory at each scrape.
pub struct GpuCollector {
    nvml: Nvml,
    gpu: u32,
    utilization: GaugeVec,
    memory: GaugeVec,
}

impl GpuCollector {
    /// `None` (with the reason) when NVML cannot be loaded or has no device `gpu`.
    pub fn new(gpu: u32) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
        nvml.device_by_index(gpu)
            .map_err(|e| format!("NVML device {gpu}: {e}"))?;
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["gpu"]).expect("valid gauge")
        };
        Ok(GpuCollector {
            nvml,
            gpu,
            utilization: gauge(
                "gpu_utilization_ratio",
                "Fraction of the last sample period in which a kernel ran (NVML)",
            ),
            memory: gauge("gpu_memory_used_bytes", "GPU memory in use (NVML)"),
        })
    }
}

impl Collector for GpuCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.utilization.desc();
        d.extend(self.memory.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let label = self.gpu.to_string();
        let mut out = Vec::new();
        if let Ok(device) = self.nvml.device_by_index(self.gpu) {
            if let Ok(u) = device.utilization_rates() {
                let g = self.utilization.with_label_values(&[&label]);
                g.set(f64::from(u.gpu) / 100.0);
                out.extend(self.utilization.collect());
            }
            if let Ok(m) = device.memory_info() {
                let g = self.memory.with_label_values(&[&label]);
                g.set(m.used as f64);
                out.extend(self.memory.collect());
            }
        }
        out
    }
}
