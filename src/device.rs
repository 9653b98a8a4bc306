//! Device selection: `--device auto|cpu|cuda:N`, and the dtype each device computes in.
//!
//! `auto` means CUDA device 0 when the binary was built with the `cuda` feature and a GPU is
//! visible, otherwise the CPU. On the CPU everything runs in f32 (candle's bf16 CPU matmul widens
//! to f32 anyway, so bf16 would only cost conversions); on CUDA weights and matmuls are bf16.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use std::fmt;
use std::str::FromStr;

/// A device as the user names it on the command line or in a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA 0 if compiled in and available, else CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                if let Some(n) = t.strip_prefix("cuda:") {
                    let ordinal = n.parse::<usize>().with_context(|| {
                        format!("device `{s}`: `{n}` is not a GPU ordinal (write e.g. `cuda:0`)")
                    })?;
                    Ok(DeviceSpec::Cuda(ordinal))
                } else {
                    bail!("unknown device `{s}`: use `auto`, `cpu` or `cuda:N` (e.g. `cuda:0`)")
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device. `cuda:N` fails with a clear message when the binary lacks the `cuda`
    /// feature or the GPU cannot be opened; `auto` falls back to the CPU instead.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
            DeviceSpec::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    bail!(
                        "device `cuda:{n}` requested, but this mlvf was built without CUDA; \
                         rebuild with `cargo build --features cuda` or use `--device cpu`"
                    );
                }
                Device::new_cuda(n).map_err(|e| cuda_open_error(n, &e.to_string()))
            }
        }
    }
}

/// The error for a CUDA device that does not open: the driver's first line (candle appends a backtrace
/// under RUST_BACKTRACE) and what the usual codes mean.
fn cuda_open_error(n: usize, err: &str) -> anyhow::Error {
    tracing::debug!("opening cuda:{n}: {err}");
    let first = err.lines().next().unwrap_or_default().trim();
    let hint = if err.contains("CUDA_ERROR_STUB_LIBRARY") {
        "; the libcuda.so.1 loaded is a link-time stub, not the NVIDIA driver: this machine has \
         no usable GPU driver (use `--device cpu`, or take the stub off LD_LIBRARY_PATH)"
            .to_string()
    } else if err.contains("CUDA_ERROR_NO_DEVICE") {
        "; the NVIDIA driver sees no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)".to_string()
    } else if err.contains("CUDA_ERROR_INVALID_DEVICE") {
        format!("; there is no GPU with ordinal {n} (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)")
    } else if err.contains("CUDA_ERROR_INSUFFICIENT_DRIVER")
        || err.contains("CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE")
    {
        "; the NVIDIA driver is older than the CUDA version this mlvf was built with".to_string()
    } else {
        String::new()
    };
    anyhow::anyhow!("cannot open CUDA device {n}: {first}{hint}")
}

impl DeviceSpec {
    /// For clap's `value_parser`: `#[arg(long, default_value = "auto", value_parser = DeviceSpec::parse_arg)]`.
    pub fn parse_arg(s: &str) -> std::result::Result<DeviceSpec, String> {
        s.parse().map_err(|e: anyhow::Error| format!("{e:#}"))
    }
}

/// Parses and opens a device in one step (`"auto"`, `"cpu"`, `"cuda:1"`).
pub fn parse_device(s: &str) -> Result<Device> {
    s.parse::<DeviceSpec>()?.open()
}

/// The dtype weights and matmuls use on `device`: f32 on the CPU, bf16 on CUDA/Metal.
/// Logits, losses, norms and softmax statistics are computed in f32 regardless.
pub fn compute_dtype(device: &Device) -> DType {
    match device {
        Device::Cpu => DType::F32,
        _ => DType::BF16,
    }
}

/// A short human name for logs: `cpu`, `cuda:0`.
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("CPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn bad_specs_say_what_is_accepted() {
        let e = "tpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(e.contains("cuda:N") && e.contains("tpu"), "{e}");
        let e = format!("{:#}", "cuda:x".parse::<DeviceSpec>().unwrap_err());
        assert!(e.contains("ordinal"), "{e}");
    }

    #[test]
    fn cpu_computes_in_f32_and_auto_always_opens() {
        let d = parse_device("cpu").unwrap();
        assert_eq!(compute_dtype(&d), DType::F32);
        assert_eq!(describe(&d), "cpu");
        // `auto` never fails: it falls back to the CPU when there is no GPU.
        parse_device("auto").unwrap();
    }

    #[test]
    fn cuda_open_errors_say_what_the_code_means() {
        let stub = "DriverError(CUDA_ERROR_STUB_LIBRARY, \"<Failure when calling cuGetErrorString()>\")\n   0: bt";
        let e = cuda_open_error(0, stub).to_string();
        assert!(
            e.starts_with("cannot open CUDA device 0: DriverError(CUDA_ERROR_STUB_LIBRARY"),
            "{e}"
        );
        assert!(
            e.contains("stub") && e.contains("--device cpu") && !e.contains("0: bt"),
            "{e}"
        );
        let e = cuda_open_error(
            3,
            "DriverError(CUDA_ERROR_INVALID_DEVICE, \"invalid device ordinal\")",
        );
        assert!(e.to_string().contains("no GPU with ordinal 3"), "{e}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
