//! The binary's subcommands besides serving: `plan-check` (the GPU plan against ONNX Runtime),
//! `bench-engine` (the engine alone, per batch size) and `check-quantisation` (int8 against
//! fp32). They use the library like any caller and share nothing with the transports.

pub mod bench_engine;
pub mod check_quant;
pub mod plan_check;
